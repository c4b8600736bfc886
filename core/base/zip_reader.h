/* A read-only ZIP reader, enough for the containers torch.save writes
 * (PyTorch >= 1.6: "<archive>/data.pkl", "<archive>/data/<key>",
 * "<archive>/version", ...): memory-mapped, every offset and size checked
 * against the file before it is used.
 *
 * Supported: stored (method 0) and deflated (method 8, through zlib)
 * entries; ZIP64 (the end-of-central-directory record and locator, and the
 * 0x0001 extra field in central and local headers), which checkpoints over
 * 4 GiB need; data descriptors (sizes come from the central directory);
 * archive comments. Refused with SDW_ERR_FORMAT: multi-disk archives,
 * encrypted entries, other compression methods, overlapping or out-of-file
 * ranges, repeated names, names holding NUL. What torch writes (miniz:
 * stored entries whose data is aligned to 64 bytes through padding in the
 * local extra field) is read in place, without copying.
 *
 * CRC-32s are checked when an entry is first read through sdw_zip_read (a
 * stored entry costs one pass over its bytes; entries never read are never
 * touched, so opening a 12 GB checkpoint to take 3 GB of it reads 3 GB).
 *
 * Every failure is one sentence naming the file (and the entry). The reader
 * is not thread-safe (the CRC state is per handle). No dependency beyond
 * libc and zlib (the fuzz build links core/base alone).
 */
#ifndef SDW_BASE_ZIP_READER_H
#define SDW_BASE_ZIP_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_zip sdw_zip;

/* One entry of the central directory; everything is owned by the reader. */
typedef struct sdw_zip_entry {
  const char *name; /* NUL-terminated, as stored (forward slashes) */
  uint16_t method;  /* 0 stored, 8 deflated */
  uint32_t crc32;
  uint64_t compressed_size;
  uint64_t size;             /* uncompressed */
  uint64_t data_offset;      /* of the (compressed) bytes within the file */
  const unsigned char *data; /* compressed_size bytes inside the mapping */
} sdw_zip_entry;

/* Maps path read-only and reads its central directory. *out is owned by the
 * caller (sdw_zip_close). SDW_ERR_NOT_FOUND / SDW_ERR_IO when the file
 * cannot be opened or mapped, SDW_ERR_FORMAT when it is not a valid ZIP. */
sdw_status sdw_zip_open(const char *path, sdw_zip **out);

/* The same over size bytes at data, which are NOT copied (they must stay
 * valid until sdw_zip_close); name is used in messages (copied). */
sdw_status sdw_zip_open_memory(const void *data, size_t size, const char *name, sdw_zip **out);

/* Unmaps and frees (also every buffer sdw_zip_read inflated); NULL is a
 * no-op. */
void sdw_zip_close(sdw_zip *z);

/* The path or name given at open. */
const char *sdw_zip_name(const sdw_zip *z);

/* Entries in central-directory order. */
size_t sdw_zip_count(const sdw_zip *z);
const sdw_zip_entry *sdw_zip_at(const sdw_zip *z, size_t index);
/* By exact name; NULL when absent. */
const sdw_zip_entry *sdw_zip_find(const sdw_zip *z, const char *name);

/* The uncompressed bytes of e (an entry of z): for a stored entry a pointer
 * into the mapping, for a deflated one a buffer the reader inflates once and
 * owns. Valid until sdw_zip_close. The first read of an entry checks its
 * CRC-32 (SDW_ERR_FORMAT on a mismatch or corrupt deflate data). The pointer
 * has no particular alignment. */
sdw_status sdw_zip_read(sdw_zip *z, const sdw_zip_entry *e, const void **data, size_t *size);

/* Inflated bytes are refused beyond this size per entry (a deflated entry
 * that claims more is SDW_ERR_FORMAT): a bound on what a hostile archive can
 * make the reader allocate. Stored entries are not copied and not bounded. */
#define SDW_ZIP_MAX_INFLATE ((uint64_t)1 << 30)

#ifdef __cplusplus
}
#endif
#endif
