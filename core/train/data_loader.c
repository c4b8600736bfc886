#include "core/train/data_loader.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "core/base/tensor.h"

void sdw_data_loader_permutation(uint64_t seed, int64_t epoch, int64_t count, int64_t *perm) {
  for (int64_t i = 0; i < count; i++)
    perm[i] = i;
  enum { CHUNK = 4096 };
  uint32_t u[2 * CHUNK];
  uint64_t pos = 0; /* stream element of the next draw */
  int64_t have = 0, used = 0;
  for (int64_t i = count - 1; i >= 1; i--) {
    if (used == have) {
      sdw_rng_fill_u32(u, 2 * CHUNK, seed + (uint64_t)epoch, 0, pos);
      pos += 2 * CHUNK;
      have = CHUNK;
      used = 0;
    }
    const uint64_t r = (uint64_t)u[2 * used] | ((uint64_t)u[2 * used + 1] << 32);
    used++;
    const int64_t j = (int64_t)(r % (uint64_t)(i + 1));
    const int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

sdw_status sdw_data_loader_init(sdw_data_loader *l, const sdw_latent_store *store, uint64_t seed,
                                int rank, int world, int batch_size) {
  memset(l, 0, sizeof *l);
  const int64_t count = sdw_latent_store_count(store);
  const int64_t per_rank = count / world;
  if (per_rank < batch_size)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the training store holds %" PRId64 " samples: too few for a batch of %d on "
                    "each of %d ranks (lower batch_size)",
                    count, batch_size, world);
  l->perm = malloc((size_t)count * sizeof *l->perm);
  if (!l->perm) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "data loader: out of memory");
  l->store = store;
  l->seed = seed;
  l->rank = rank;
  l->world = world;
  l->batch_size = batch_size;
  l->epoch = -1;
  l->per_rank = per_rank;
  return SDW_OK;
}

void sdw_data_loader_free(sdw_data_loader *l) {
  free(l->perm);
  l->perm = NULL;
}

int64_t sdw_data_loader_batches(const sdw_data_loader *l) { return l->per_rank / l->batch_size; }

void sdw_data_loader_indices(sdw_data_loader *l, int64_t epoch, int64_t b, int64_t *idx) {
  SDW_ASSERT(b >= 0 && b < sdw_data_loader_batches(l));
  if (l->epoch != epoch) {
    sdw_data_loader_permutation(l->seed, epoch, sdw_latent_store_count(l->store), l->perm);
    l->epoch = epoch;
  }
  const int64_t start = (b * l->world + l->rank) * l->batch_size;
  for (int i = 0; i < l->batch_size; i++)
    idx[i] = l->perm[start + i];
}

void sdw_data_loader_gather(const sdw_latent_store *store, const int64_t *idx, int64_t n,
                            float *latents, int32_t *ids, int32_t *mask, float *context) {
  int c, h, w;
  sdw_latent_store_shape(store, &c, &h, &w);
  const int64_t per = (int64_t)c * h * w, L = sdw_latent_store_seq_len(store),
                D = sdw_latent_store_context_dim(store);
  for (int64_t k = 0; k < n; k++) {
    const uint16_t *lat = sdw_latent_store_latent(store, idx[k]);
    for (int64_t i = 0; i < per; i++)
      latents[k * per + i] = sdw_f16_to_f32(lat[i]);
    if (ids) memcpy(ids + k * L, sdw_latent_store_input_ids(store, idx[k]), (size_t)L * 4);
    if (mask) memcpy(mask + k * L, sdw_latent_store_attention_mask(store, idx[k]), (size_t)L * 4);
    if (context) {
      const uint16_t *cx = sdw_latent_store_context(store, idx[k]);
      SDW_ASSERT(cx);
      for (int64_t i = 0; i < L * D; i++)
        context[k * L * D + i] = sdw_f16_to_f32(cx[i]);
    }
  }
}
