/* The latent store: what `sdw pipeline encode` writes and the trainer reads
 * (documented for users in sdw-formats(5)).
 *
 * A store is one directory per split (DATA/latents/train, DATA/latents/val):
 *
 *   chunk-00000.safetensors  one chunk of samples, in dataset order
 *   chunk-00001.safetensors  ...
 *   index.json               written last: the store is complete only then
 *
 * Every chunk is a plain safetensors file (core/base/safetensors.h), so it is
 * memory-mapped and readable by the `safetensors` Python package:
 *
 *   "latents"         F16 [n, C, H, W]  posterior mean x scaling_factor
 *   "input_ids"       I32 [n, L]        CLIP token ids (L = 77)
 *   "attention_mask"  I32 [n, L]
 *   "keys.bytes"      U8  [k]           the sample keys "<shard>::<key>",
 *   "keys.offsets"    I64 [n + 1]       concatenated, key i = bytes[off[i], off[i+1])
 *   "captions.bytes"  U8  [c]           the captions (UTF-8), same scheme
 *   "captions.offsets" I64 [n + 1]
 *   "context"         F16 [n, L, D]     optional: precomputed text embeddings
 *
 * and its __metadata__ has "format": "sdw-latent-chunk/1". index.json:
 *
 *   {"format": "sdw-latents/1", "split": "train", "count": N,
 *    "latent_shape": [C, H, W], "dtype": "F16", "scaling_factor": 0.18215,
 *    "seq_len": 77, "context_dim": 0 or D, "image_size": 512,
 *    "vae": "<what encoded it>",
 *    "chunks": [{"file": "chunk-00000.safetensors", "count": n,
 *                "bytes": B, "sha256": "..."}]}
 *
 * Writers write each chunk atomically (core/base/fsutil.h) and index.json
 * last, so a reader never sees a half-written store. Chunk n's samples are
 * a contiguous range of the dataset order, which is what makes encoding
 * resumable (a chunk that exists is done) and splittable across processes.
 */
#ifndef SDW_BASE_LATENT_STORE_H
#define SDW_BASE_LATENT_STORE_H

#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One chunk to write. All arrays are the caller's (host). */
typedef struct sdw_latent_chunk {
  int64_t count;                 /* n >= 1 */
  int channels, height, width;   /* C, H, W of one latent */
  int seq_len;                   /* L (77) */
  int context_dim;               /* D, or 0 when context is NULL */
  const uint16_t *latents;       /* [n, C, H, W] IEEE half */
  const int32_t *input_ids;      /* [n, L] */
  const int32_t *attention_mask; /* [n, L] */
  const uint16_t *context;       /* [n, L, D] IEEE half, or NULL */
  const char *const *keys;       /* [n] NUL-terminated */
  const char *const *captions;   /* [n] NUL-terminated */
} sdw_latent_chunk;

/* Writes one chunk file atomically at path. */
sdw_status sdw_latent_chunk_write(const char *path, const sdw_latent_chunk *chunk);

/* Writes DIR/index.json atomically, listing DIR/chunk-%05d.safetensors for
 * 0 <= i < num_chunks (each is opened and checked against the others'
 * shapes; counts, sizes and SHA-256 are filled in). vae describes the
 * encoder (free text), image_size the pixel size the latents came from. */
sdw_status sdw_latent_store_finish(const char *dir, const char *split, int num_chunks,
                                   double scaling_factor, int image_size, const char *vae);

/* A complete store opened for reading (every chunk memory-mapped). */
typedef struct sdw_latent_store sdw_latent_store;

/* Opens DIR (with its index.json): SDW_ERR_NOT_FOUND when the store is
 * missing or incomplete, SDW_ERR_FORMAT (naming the file) when a chunk
 * disagrees with the index. Close with sdw_latent_store_close. */
sdw_status sdw_latent_store_open(const char *dir, sdw_latent_store **out);
void sdw_latent_store_close(sdw_latent_store *store);

/* Shape of the store. */
int64_t sdw_latent_store_count(const sdw_latent_store *store);
void sdw_latent_store_shape(const sdw_latent_store *store, int *channels, int *height, int *width);
int sdw_latent_store_seq_len(const sdw_latent_store *store);
int sdw_latent_store_context_dim(const sdw_latent_store *store); /* 0: none stored */
double sdw_latent_store_scaling_factor(const sdw_latent_store *store);

/* Sample i (0 <= i < count); pointers into the mapping, valid until close. */
const uint16_t *sdw_latent_store_latent(const sdw_latent_store *store, int64_t i);   /* [C,H,W] */
const int32_t *sdw_latent_store_input_ids(const sdw_latent_store *store, int64_t i); /* [L] */
const int32_t *sdw_latent_store_attention_mask(const sdw_latent_store *store, int64_t i);
const uint16_t *sdw_latent_store_context(const sdw_latent_store *store,
                                         int64_t i); /* [L,D] or NULL */
/* Key and caption of sample i: not NUL-terminated, *len bytes. */
const char *sdw_latent_store_key(const sdw_latent_store *store, int64_t i, int64_t *len);
const char *sdw_latent_store_caption(const sdw_latent_store *store, int64_t i, int64_t *len);

#ifdef __cplusplus
}
#endif
#endif
