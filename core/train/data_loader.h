/* The training data loader over a latent store (core/base/latent_store.h).
 *
 * Order: epoch e visits the permutation P_e of [0, count) drawn by a
 * Fisher-Yates shuffle from the Philox stream (seed + e, subsequence 0):
 * for i = count-1 .. 1, j = u64(i) mod (i + 1) with u64(i) = the stream's
 * u32 elements 2k, 2k+1 (k = count-1-i) as low, high word, swap P[i], P[j].
 * Every rank uses the same permutation. Global micro-batch b of the epoch
 * is P_e[b*W*B, (b+1)*W*B) (W ranks, batch B per rank) and rank r takes
 * the r-th B of it; a partial last global batch is dropped (drop_last).
 * The seed's sampler gives each rank a contiguous slice of the epoch
 * instead; this order is a deliberate deviation so that W ranks with batch
 * B see exactly the samples of one rank with batch W*B (a run's result does
 * not depend on how many ranks ran it).
 *
 * A batch is a pure function of (seed, epoch, b, rank, world, B): resuming
 * at any (epoch, b) gives the same samples as running through.
 */
#ifndef SDW_TRAIN_DATA_LOADER_H
#define SDW_TRAIN_DATA_LOADER_H

#include <stdint.h>

#include "core/base/latent_store.h"
#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_data_loader {
  const sdw_latent_store *store; /* borrowed */
  uint64_t seed;
  int rank, world, batch_size;
  int64_t epoch;    /* the epoch whose permutation perm holds (-1: none) */
  int64_t *perm;    /* [count] owned */
  int64_t per_rank; /* count / world (the batches are per_rank / batch_size) */
} sdw_data_loader;

/* SDW_ERR_INVALID_ARGUMENT when the store holds fewer samples than one batch
 * per rank (names the counts). Free with sdw_data_loader_free. */
sdw_status sdw_data_loader_init(sdw_data_loader *l, const sdw_latent_store *store, uint64_t seed,
                                int rank, int world, int batch_size);
void sdw_data_loader_free(sdw_data_loader *l);

/* Micro-batches per rank per epoch (drop_last). */
int64_t sdw_data_loader_batches(const sdw_data_loader *l);

/* The store indices of micro-batch b of epoch (idx[batch_size]). */
void sdw_data_loader_indices(sdw_data_loader *l, int64_t epoch, int64_t b, int64_t *idx);

/* The permutation of epoch into perm[count] (the definition above). */
void sdw_data_loader_permutation(uint64_t seed, int64_t epoch, int64_t count, int64_t *perm);

/* Gathers samples idx[n] as f32: latents[n, C, H, W]; ids, mask [n, L] as
 * I32 (may be NULL); context[n, L, D] from the store's stored contexts (may
 * be NULL; the store must have them). Host arrays, caller's. */
void sdw_data_loader_gather(const sdw_latent_store *store, const int64_t *idx, int64_t n,
                            float *latents, int32_t *ids, int32_t *mask, float *context);

#ifdef __cplusplus
}
#endif
#endif
