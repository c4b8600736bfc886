/* Page compression codecs for parquet: decompression of UNCOMPRESSED,
 * SNAPPY, GZIP, ZSTD and LZ4_RAW pages, compression for SNAPPY and GZIP.
 *
 *  - SNAPPY: our own raw-block (not framed) decoder and a greedy hash-matching
 *    encoder (google/snappy format_description.txt). The decoder checks every
 *    tag, offset and length against the input and output bounds.
 *  - GZIP: zlib (-lz, already linked); gzip or zlib headers are accepted on
 *    input (Arrow writes gzip), gzip is written.
 *  - ZSTD: libzstd, loaded at first use with dlopen("libzstd.so.1") so the
 *    build needs neither a -dev package nor a link flag (the library itself
 *    is on every Debian/Ubuntu system, apt depends on it). Without it a ZSTD
 *    page is SDW_ERR_UNSUPPORTED naming the library.
 *  - LZ4_RAW: our own LZ4 block decoder.
 * BROTLI, LZO and the Hadoop-framed LZ4 (codec 5) are SDW_ERR_UNSUPPORTED.
 *
 * Decompression always knows the exact decompressed size (parquet's page
 * header declares it): the output buffer is exactly that large and anything
 * that would write past it, or stop short of it, is a failure. Before the
 * caller allocates that buffer it can bound the declared size with
 * sdw_parquet_codec_max_expansion. All functions are thread-safe. */
#ifndef SDW_PIPELINE_PARQUET_CODEC_H
#define SDW_PIPELINE_PARQUET_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* parquet.thrift CompressionCodec values. */
typedef enum sdw_parquet_codec {
  SDW_PARQUET_UNCOMPRESSED = 0,
  SDW_PARQUET_SNAPPY = 1,
  SDW_PARQUET_GZIP = 2,
  SDW_PARQUET_LZO = 3,
  SDW_PARQUET_BROTLI = 4,
  SDW_PARQUET_LZ4_HADOOP = 5,
  SDW_PARQUET_ZSTD = 6,
  SDW_PARQUET_LZ4_RAW = 7,
} sdw_parquet_codec;

/* "UNCOMPRESSED", "SNAPPY", ... or "codec N". Returns a static string. */
const char *sdw_parquet_codec_name(int codec);

/* The largest decompressed size a valid stream of compressed_size bytes can
 * have for this codec (SIZE_MAX when unknown or unbounded, e.g. ZSTD), so a
 * declared size above it is refused before anything is allocated. */
size_t sdw_parquet_codec_max_expansion(int codec, size_t compressed_size);

/* Decompresses src (n bytes) into dst, which must receive exactly dst_size
 * bytes. SDW_ERR_FORMAT (message "<what>: <codec> data is corrupt: ...") on
 * a malformed stream or a size mismatch, SDW_ERR_UNSUPPORTED for a codec this
 * build cannot decode. what names the page for messages. */
sdw_status sdw_parquet_decompress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                                  size_t dst_size, const char *what);

/* Upper bound of the compressed size of n bytes (for sizing the output of
 * sdw_parquet_compress). */
size_t sdw_parquet_compress_bound(int codec, size_t n);
/* Compresses src into dst (capacity dst_cap >= sdw_parquet_compress_bound)
 * and sets *out_size. Codecs: UNCOMPRESSED, SNAPPY, GZIP; others are
 * SDW_ERR_UNSUPPORTED. */
sdw_status sdw_parquet_compress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                                size_t dst_cap, size_t *out_size);

/* The raw snappy pieces, exposed for tests. */
bool sdw_snappy_uncompressed_length(const uint8_t *src, size_t n, size_t *length);
bool sdw_snappy_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_size);
size_t sdw_snappy_max_compressed_length(size_t n);
size_t sdw_snappy_compress(const uint8_t *src, size_t n, uint8_t *dst);
bool sdw_lz4_block_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_size);

#ifdef __cplusplus
}
#endif
#endif
