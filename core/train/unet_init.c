#include "core/train/unet_init.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The zero-initialised modules (SEED.md 1.5; LDM: a subset). */
static bool zero_initialised(const char *name, sdw_zero_init zero) {
  if (strstr(name, ".conv2.") || strstr(name, ".proj_out.") || strncmp(name, "conv_out.", 9) == 0 ||
      strncmp(name, "ctx_pool.", 9) == 0)
    return true;
  return zero == SDW_ZERO_INIT_SEED && (strstr(name, ".to_out.") || strstr(name, ".mlp.2."));
}

bool sdw_zero_init_from_name(const char *name, sdw_zero_init *out) {
  if (strcmp(name, "seed") == 0) return *out = SDW_ZERO_INIT_SEED, true;
  if (strcmp(name, "ldm") == 0) return *out = SDW_ZERO_INIT_LDM, true;
  return false;
}

static int64_t fan_in(const sdw_tensor *w) {
  int64_t f = w->shape[1];
  for (int d = 2; d < w->ndim; d++)
    f *= w->shape[d];
  return f;
}

sdw_status sdw_unet_init_random(sdw_unet *m, uint64_t seed) {
  return sdw_unet_init_random_with(m, seed, SDW_ZERO_INIT_SEED);
}

typedef struct zero_rule {
  bool seed_topology;
  sdw_zero_init zero;
} zero_rule;

static bool unet_zero(const char *name, void *arg) {
  const zero_rule *r = arg;
  return r->seed_topology && zero_initialised(name, r->zero);
}

sdw_status sdw_unet_init_random_with(sdw_unet *m, uint64_t seed, sdw_zero_init zero) {
  zero_rule rule = {m->cfg.topology == SDW_UNET_SEED, zero};
  return sdw_params_init_random(&m->params, seed, unet_zero, &rule);
}

sdw_status sdw_params_init_random(sdw_params *p, uint64_t seed,
                                  bool (*zero)(const char *name, void *arg), void *arg) {
  float *host = calloc(p->total ? p->total : 1, sizeof *host);
  if (!host) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "init: out of memory");
  for (int i = 0; i < p->count; i++) {
    const sdw_param *it = &p->items[i];
    const int64_t n = sdw_tensor_numel(&it->value);
    float *dst = host + it->offset;
    if (zero && zero(it->name, arg)) continue; /* zeros */
    double bound = 0;
    if (it->value.ndim >= 2) {
      bound = 1.0 / sqrt((double)fan_in(&it->value));
    } else if (ends_with(it->name, "bias")) {
      char wname[SDW_PARAM_NAME_MAX];
      snprintf(wname, sizeof wname,
               "%.*s"
               "weight",
               (int)(strlen(it->name) - 4), it->name);
      const sdw_param *w = sdw_params_find(p, wname);
      if (w && w->value.ndim >= 2) bound = 1.0 / sqrt((double)fan_in(&w->value));
      /* else a norm's bias: 0 */
    } else {
      for (int64_t k = 0; k < n; k++)
        dst[k] = 1.0f; /* a norm's scale */
      continue;
    }
    if (bound == 0) continue;
    sdw_rng_fill_uniform(dst, (size_t)n, seed, 0x696e6974ull + (uint64_t)i, 0);
    for (int64_t k = 0; k < n; k++)
      dst[k] = (float)((2.0 * dst[k] - 1.0) * bound);
  }
  sdw_status st = p->ctx->ops->upload(p->ctx, p->flat, host, p->total * sizeof *host);
  free(host);
  return st;
}
