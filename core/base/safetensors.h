/* safetensors: reading (zero-copy, memory-mapped) and writing (atomic).
 *
 * Format (https://github.com/huggingface/safetensors): 8 bytes little-endian
 * u64 N, N bytes of UTF-8 JSON header, then the data section. The header is
 * an object {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin,
 * end]}, "__metadata__": {string: string}} with offsets relative to the
 * start of the data section.
 *
 * The reader validates like the reference implementation
 * (safetensors/src/tensor.rs, read_metadata + Metadata::validate): every
 * file it accepts is one the Python package accepts, and it refuses only the
 * few files listed further down that the package would take. Checks:
 *  - the file has at least 8 bytes; N <= 100,000,000 (MAX_HEADER_SIZE) and
 *    8 + N <= file size; the header is valid UTF-8 JSON (nothing but
 *    whitespace after the top-level object; the space padding is that);
 *  - every entry has dtype (one of the 15 names in core/base/tensor.h),
 *    shape (array of non-negative integers) and data_offsets (array of two
 *    non-negative integers); unknown extra fields are ignored as serde does;
 *    the number of elements and bytes are computed with checked u64
 *    arithmetic (overflow is an error) and end - begin must equal the bytes;
 *  - sorted by (begin, end), the entries tile the data section exactly: the
 *    first begins at 0, each begins where the previous ended, and the last
 *    ends at the end of the file (no gap, no overlap, no trailing bytes);
 *  - "__metadata__", when present, is an object of string values (or null).
 * Deliberately stricter than the reference (each refusal is a file that the
 * reference reads ambiguously or that no writer produces; checked against
 * safetensors 0.8.0 in tests/test_safetensors.c):
 *  - the header must begin with '{' (the reference has this check written
 *    but disabled, so it also takes leading whitespace);
 *  - a tensor name may not repeat, nor a key of __metadata__ (serde keeps
 *    one of the two silently);
 *  - names and strings may not contain U+0000 (C strings);
 *  - a dimension must fit in int64 (only an empty tensor can exceed it);
 *  - an entry must be a JSON object (serde also takes a 3-element array).
 * Every failure is SDW_ERR_FORMAT with one sentence naming the file and the
 * problem. The reader never reads outside the given bytes.
 *
 * Data pointers point into the mapping (or the caller's buffer for
 * sdw_safetensors_open_memory), are read-only and stay valid until
 * sdw_safetensors_close. A mapped file must not be truncated while it is
 * open (the kernel answers reads past the new end with SIGBUS). Tensor data
 * is aligned to its element size only when the writer arranged it (8 + N a
 * multiple of 8 and aligned offsets, which the Python package and our writer
 * do); sdw_safetensors_tensor refuses a misaligned view, and memcpy from
 * entry->data always works.
 */
#ifndef SDW_BASE_SAFETENSORS_H
#define SDW_BASE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The reference's limit on the header length N. */
#define SDW_SAFETENSORS_MAX_HEADER 100000000u

typedef struct sdw_safetensors sdw_safetensors;

/* One tensor of an open file; everything is owned by the reader. */
typedef struct sdw_safetensors_entry {
  const char *name; /* NUL-terminated UTF-8 */
  sdw_dtype dtype;
  int ndim;             /* 0 for a scalar */
  const int64_t *shape; /* ndim dims */
  int64_t numel;        /* product of the dims (1 for a scalar) */
  const void *data;     /* nbytes bytes, little-endian, row-major; read-only */
  size_t nbytes;
  uint64_t offset; /* begin offset within the data section */
} sdw_safetensors_entry;

/* Maps path read-only and validates it. *out is owned by the caller
 * (sdw_safetensors_close). SDW_ERR_NOT_FOUND / SDW_ERR_IO when the file
 * cannot be opened or mapped, SDW_ERR_FORMAT when it is malformed. */
sdw_status sdw_safetensors_open(const char *path, sdw_safetensors **out);

/* The same over size bytes at data, which are NOT copied: they must stay
 * valid and unchanged until sdw_safetensors_close. name is used in messages
 * (copied). */
sdw_status sdw_safetensors_open_memory(const void *data, size_t size, const char *name,
                                       sdw_safetensors **out);

/* Unmaps and frees; NULL is a no-op. */
void sdw_safetensors_close(sdw_safetensors *st);
/* Tells the kernel that entry's bytes of a mapped file will not be read
 * again soon, so its pages leave the process's resident set (a loader that
 * copies weights out calls this after each tensor: a 3.4 GB UNet file then
 * does not count twice in the peak RSS). Reading the entry later still
 * works (the pages come back from the file). No-op for open_memory. */
void sdw_safetensors_release(const sdw_safetensors *st, const sdw_safetensors_entry *entry);

/* The path or name given at open (for messages). */
const char *sdw_safetensors_name(const sdw_safetensors *st);

/* Tensors in the order they appear in the header. */
size_t sdw_safetensors_count(const sdw_safetensors *st);
const sdw_safetensors_entry *sdw_safetensors_at(const sdw_safetensors *st, size_t index);

/* By name; NULL when absent (no error recorded). */
const sdw_safetensors_entry *sdw_safetensors_find(const sdw_safetensors *st, const char *name);
/* By name; SDW_ERR_NOT_FOUND "<file>: no tensor named 'x'" when absent. */
sdw_status sdw_safetensors_get(const sdw_safetensors *st, const char *name,
                               const sdw_safetensors_entry **out);

/* A CPU tensor view of the entry's data (not copied). The memory is
 * read-only: writing through the view crashes. SDW_ERR_UNSUPPORTED when the
 * entry has more than SDW_MAX_DIMS dims or its data is not aligned to the
 * element size. */
sdw_status sdw_safetensors_tensor(const sdw_safetensors *st, const sdw_safetensors_entry *entry,
                                  sdw_tensor *out);

/* __metadata__: pairs in header order; get returns NULL when the key is
 * absent. Strings are owned by the reader. */
size_t sdw_safetensors_metadata_count(const sdw_safetensors *st);
void sdw_safetensors_metadata_at(const sdw_safetensors *st, size_t index, const char **key,
                                 const char **value);
const char *sdw_safetensors_metadata_get(const sdw_safetensors *st, const char *key);

/* --- writing ---------------------------------------------------------------- */

/* Collects tensors and metadata, then writes them in one go:
 *   header JSON '{"__metadata__":{..},"name":{"dtype":..,"shape":..,
 *   "data_offsets":[b,e]},..}' (metadata first when there is any), padded
 *   with spaces so that 8 + N is a multiple of 8, then each tensor's bytes in
 *   header order with contiguous offsets.
 * Order: tensors with larger elements come first (8-byte, then 4, 2, 1, as
 * the reference writer does) and, within one element size, in the order
 * added. That keeps every tensor aligned to its element size in the file (so
 * memory-mapped readers can use it in place) without padding, which the
 * format does not allow; a file of one dtype is simply in the order added.
 * Data is streamed from the callers' pointers to the file (nothing is
 * concatenated in memory) through the atomic writer (core/base/fsutil.h).
 * The writer does not copy tensor data: every pointer given to _add must
 * stay valid until _write returns. Names, keys and values are copied. */
typedef struct sdw_safetensors_writer sdw_safetensors_writer;

/* *out is owned by the caller (sdw_safetensors_writer_destroy). */
sdw_status sdw_safetensors_writer_create(sdw_safetensors_writer **out);
void sdw_safetensors_writer_destroy(sdw_safetensors_writer *w);

/* Adds a tensor of dtype and shape[ndim] whose row-major little-endian bytes
 * (numel * dtype size of them) are at data (NULL allowed when that is 0).
 * SDW_ERR_INVALID_ARGUMENT for a repeated or reserved ("__metadata__") name,
 * a name that is not UTF-8, a negative dim, or a byte size that overflows. */
sdw_status sdw_safetensors_writer_add(sdw_safetensors_writer *w, const char *name, sdw_dtype dtype,
                                      int ndim, const int64_t *shape, const void *data);
/* The same for a CPU tensor view. */
sdw_status sdw_safetensors_writer_add_tensor(sdw_safetensors_writer *w, const char *name,
                                             const sdw_tensor *t);
/* Sets (or replaces) one __metadata__ entry; both strings must be UTF-8. */
sdw_status sdw_safetensors_writer_set_metadata(sdw_safetensors_writer *w, const char *key,
                                               const char *value);
/* Writes the file atomically (temp + fsync + rename + directory fsync). The
 * writer keeps its contents and can write again. */
sdw_status sdw_safetensors_writer_write(const sdw_safetensors_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
