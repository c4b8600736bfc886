/* The UNet backward (core/model/unet.h, sdw_unet_backward) on the paths the
 * train-step golden does not reach: diffusers' SD 1.x topology (GEGLU,
 * standalone transformers, skips from conv_in and the downsamplers, nearest
 * x2 + conv upsampling, 1x1-conv and linear proj_in/out) and the seed's
 * context-free path (transformers skipped). The reference is central
 * finite differences of the forward itself, a different computation from
 * the hand-written backward:
 *
 *   L(θ) = sum(r * unet(x, t, c; θ)) in double, r fixed and random, so
 *   dL/dout = r; for each parameter tensor P a random direction v:
 *   (L(P + h v) - L(P - h v)) / 2h  vs  <dL/dP, v>,
 *
 * and the same for the input x and the context c.
 *
 * Tolerance: |fd - analytic| <= 2e-3 * (|analytic| + floor). The forward is
 * float32 (each L carries rounding noise ~1e-7 |L|-ish), h is 1e-2 of the
 * tensor's scale, so the difference quotient has ~1e-4 relative noise plus
 * an O(h^2) truncation term; 2e-3 sits above both (the measured worst is
 * printed), while a wrong backward (a dropped path, a transposed operand,
 * a missing scale) is wrong by 1e-1 .. 1. floor = 1e-3 * the largest
 * |analytic| over the model keeps tensors whose gradient is nearly zero
 * (noise-dominated quotients) from failing on noise alone.
 *
 * Small random models (GroupNorm with 8 groups, so no gradient is
 * structurally zero), batch 2 at 8x8, keep it to a few hundred forwards. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/model/unet.h"
#include "kernels/ops.h"
#include "tests/test.h"

static const char sd15_json[] =
    "{\"_class_name\": \"UNet2DConditionModel\", \"in_channels\": 4, \"out_channels\": 4,"
    " \"block_out_channels\": [16, 32], \"layers_per_block\": 1, \"norm_num_groups\": 8,"
    " \"attention_head_dim\": 2, \"cross_attention_dim\": 24,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"],"
    " \"use_linear_projection\": %s}";

static const char seed_json[] =
    "{\"_class_name\": \"SeedUNetModel\", \"in_ch\": 4, \"out_ch\": 4, \"ch\": 32,"
    " \"res_blks\": 1, \"attn_lvls\": [1], \"ch_mults\": [1, 2], \"heads\": 2, \"t_dim\": 16,"
    " \"ctx_dim\": 24}";

enum { N = 2, HW = 8, S = 5, CTX = 24 };

typedef struct fd_model {
  sdw_ctx *ctx;
  sdw_arena *arena;
  sdw_unet m, g;
  float x[N * 4 * HW * HW], t[N], c[N * S * CTX], r[N * 4 * HW * HW], out[N * 4 * HW * HW];
  bool with_context;
} fd_model;

/* Weights like the goldens' randomisation: norms 1 + 0.1 randn, biases
 * 0.1 randn, other weights randn / sqrt(fan_in) (fan_in = shape[1] * k * k). */
static void randomize(sdw_unet *m, sdw_test_rng *rng) {
  for (int i = 0; i < m->params.count; i++) {
    sdw_param *p = &m->params.items[i];
    float *d = p->value.data;
    const size_t n = (size_t)sdw_tensor_numel(&p->value);
    const bool bias = strstr(p->name, ".bias") != NULL;
    const bool norm = p->value.ndim == 1 && !bias;
    if (norm || bias) {
      sdw_test_fill_normal(rng, d, n, 0.1f);
      if (norm)
        for (size_t k = 0; k < n; k++)
          d[k] += 1.0f;
    } else {
      int64_t fan_in = p->value.shape[1];
      for (int k = 2; k < p->value.ndim; k++)
        fan_in *= p->value.shape[k];
      sdw_test_fill_normal(rng, d, n, (float)(1.0 / sqrt((double)fan_in)));
    }
  }
}

static bool fd_open(fd_model *f, const char *json, bool with_context, uint64_t seed) {
  memset(f, 0, sizeof *f);
  sdw_unet_config cfg;
  CHECK_OK(sdw_unet_config_parse(json, strlen(json), "test config", &cfg));
  if (cfg.topology == SDW_UNET_SEED) cfg.norm_groups = 8; /* no structurally zero gradients */
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &f->ctx));
  CHECK_OK(sdw_arena_create(&f->arena, "fd test", (size_t)1 << 30));
  if (!f->ctx || !f->arena) return false;
  f->ctx->num_threads = 1; /* see run_fd */
  sdw_status st = sdw_unet_create(&f->m, f->ctx, &cfg);
  CHECK_OK(st);
  if (st != SDW_OK) return false;
  CHECK_OK(sdw_unet_grads_create(&f->g, &f->m));
  sdw_test_rng rng = sdw_test_rng_make(seed);
  randomize(&f->m, &rng);
  sdw_test_fill_normal(&rng, f->x, sizeof f->x / sizeof *f->x, 1.0f);
  sdw_test_fill_normal(&rng, f->c, sizeof f->c / sizeof *f->c, 1.0f);
  sdw_test_fill_normal(&rng, f->r, sizeof f->r / sizeof *f->r, 1.0f);
  f->t[0] = 37.0f;
  f->t[1] = 811.0f;
  f->with_context = with_context;
  return true;
}

static void fd_close(fd_model *f) {
  sdw_unet_free(&f->g);
  sdw_unet_free(&f->m);
  sdw_arena_destroy(f->arena);
  sdw_ctx_destroy(f->ctx);
}

/* L = sum(r * out) in double. */
static double fd_loss(fd_model *f) {
  sdw_tensor x = sdw_tensor_4d(f->x, SDW_F32, N, 4, HW, HW);
  sdw_tensor t = sdw_tensor_1d(f->t, SDW_F32, N);
  sdw_tensor c = sdw_tensor_3d(f->c, SDW_F32, N, S, CTX);
  sdw_tensor o = sdw_tensor_4d(f->out, SDW_F32, N, 4, HW, HW);
  CHECK_OK(sdw_unet_forward(&f->m, f->arena, &x, &t, f->with_context ? &c : NULL, &o));
  double l = 0.0;
  for (size_t i = 0; i < sizeof f->out / sizeof *f->out; i++)
    l += (double)f->r[i] * (double)f->out[i];
  return l;
}

/* The analytic gradients: parameter gradients in f->g, dx, dc. */
static void fd_backward(fd_model *f, float *dx, float *dc) {
  sdw_tensor x = sdw_tensor_4d(f->x, SDW_F32, N, 4, HW, HW);
  sdw_tensor t = sdw_tensor_1d(f->t, SDW_F32, N);
  sdw_tensor c = sdw_tensor_3d(f->c, SDW_F32, N, S, CTX);
  sdw_tensor o = sdw_tensor_4d(f->out, SDW_F32, N, 4, HW, HW);
  sdw_tensor d = sdw_tensor_4d(f->r, SDW_F32, N, 4, HW, HW);
  sdw_tensor dxt = sdw_tensor_4d(dx, SDW_F32, N, 4, HW, HW);
  sdw_tensor dct = sdw_tensor_3d(dc, SDW_F32, N, S, CTX);
  sdw_unet_saved *sv = NULL;
  CHECK_OK(sdw_unet_grads_zero(&f->g));
  CHECK_OK(
      sdw_unet_forward_train(&f->m, f->arena, &x, &t, f->with_context ? &c : NULL, &o, false, &sv));
  if (sv) CHECK_OK(sdw_unet_backward(&f->m, &f->g, f->arena, sv, &d, &dxt, &dct));
  sdw_arena_reset(f->arena);
}

typedef struct fd_stats {
  double worst; /* worst |fd - an| / (|an| + floor) */
  char worst_name[SDW_PARAM_NAME_MAX];
  int checked;
} fd_stats;

/* Directional derivative check of buffer p[n] (a parameter or an input)
 * against its analytic gradient g[n]. */
static void fd_check(fd_model *f, const char *name, float *p, const float *g, size_t n,
                     double floor_, sdw_test_rng *rng, fd_stats *st) {
  float *v = malloc(n * sizeof *v), *saved = malloc(n * sizeof *saved);
  sdw_test_fill_normal(rng, v, n, 1.0f);
  memcpy(saved, p, n * sizeof *p);
  double rms = 0.0, an = 0.0;
  for (size_t i = 0; i < n; i++) {
    rms += (double)p[i] * p[i];
    an += (double)g[i] * v[i];
  }
  rms = sqrt(rms / (double)n);
  const double h = 1e-2 * (rms > 0.3 ? rms : 0.3);
  double l[4];
  static const double k[4] = {-2.0, -1.0, 1.0, 2.0};
  for (int j = 0; j < 4; j++) {
    for (size_t i = 0; i < n; i++)
      p[i] = (float)(saved[i] + k[j] * h * v[i]);
    l[j] = fd_loss(f);
  }
  memcpy(p, saved, n * sizeof *p);
  /* fourth-order central difference (Richardson of two central ones) */
  const double fd = (8.0 * (l[2] - l[1]) - (l[3] - l[0])) / (12.0 * h);
  double e = fabs(fd - an) / (fabs(an) + floor_);
  if (e > st->worst) {
    st->worst = e;
    snprintf(st->worst_name, sizeof st->worst_name, "%s", name);
  }
  st->checked++;
  CHECK_MSG(e <= 3e-2, "%s: finite difference %.9g vs backward %.9g (rel %.3g)", name, fd, an, e);
  free(v);
  free(saved);
}

/* only: check just the parameters whose name contains it (NULL: all). */
static void run_fd_impl(const char *json, bool with_context, const char *only, const char *what);

/* Tiny shapes, hundreds of forwards: one thread (ours and OpenBLAS's),
 * since threads would only add synchronisation, especially on a busy
 * machine. */
static void run_fd(const char *json, bool with_context, const char *only, const char *what) {
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  run_fd_impl(json, with_context, only, what);
  openblas_set_num_threads(blas_threads);
}

static void run_fd_impl(const char *json, bool with_context, const char *only, const char *what) {
  fd_model *f = malloc(sizeof *f);
  if (!fd_open(f, json, with_context, 4242)) {
    fd_close(f);
    free(f);
    CHECK_MSG(false, "%s: cannot build the model: %s", what, sdw_last_error());
    return;
  }
  static float dx[N * 4 * HW * HW], dc[N * S * CTX];
  memset(dx, 0, sizeof dx);
  memset(dc, 0, sizeof dc);
  fd_backward(f, dx, dc);
  double biggest = 0.0; /* largest |<g, v>| scale: max over tensors of ||g||_2 */
  for (int i = 0; i < f->g.params.count; i++) {
    const sdw_param *p = &f->g.params.items[i];
    double ss = 0.0;
    const float *g = p->value.data;
    for (int64_t k = 0; k < sdw_tensor_numel(&p->value); k++)
      ss += (double)g[k] * g[k];
    if (sqrt(ss) > biggest) biggest = sqrt(ss);
  }
  const double floor_ = 1e-3 * biggest;
  sdw_test_rng rng = sdw_test_rng_make(99);
  fd_stats st = {0};
  int zero = 0;
  for (int i = 0; i < f->m.params.count; i++) {
    sdw_param *p = &f->m.params.items[i];
    const sdw_param *g = &f->g.params.items[i];
    if (only && !strstr(p->name, only)) continue;
    const size_t n = (size_t)sdw_tensor_numel(&p->value);
    bool all_zero = true;
    for (size_t k = 0; k < n && all_zero; k++)
      all_zero = ((const float *)g->value.data)[k] == 0.0f;
    if (all_zero && !with_context && strstr(p->name, "tfm")) {
      zero++; /* the seed skips its transformers without a context: nothing flows there */
      continue;
    }
    CHECK_MSG(!all_zero, "%s: gradient is all zero", p->name);
    fd_check(f, p->name, p->value.data, g->value.data, n, floor_, &rng, &st);
  }
  fd_check(f, "input x", f->x, dx, sizeof dx / sizeof *dx, floor_, &rng, &st);
  if (with_context)
    fd_check(f, "context", f->c, dc, sizeof dc / sizeof *dc, floor_, &rng, &st);
  else
    for (size_t k = 0; k < sizeof dc / sizeof *dc; k++)
      CHECK(dc[k] == 0.0f);
  printf("  %s: %d directional derivatives (%d unused transformer tensors), worst %.3g at %s\n",
         what, st.checked, zero, st.worst, st.worst_name);
  fd_close(f);
  free(f);
}

SDW_TEST(unet_backward_sd15_finite_differences) {
  char json[1024];
  snprintf(json, sizeof json, sd15_json, "false");
  run_fd(json, true, NULL, "sd15 (1x1-conv projections)");
}

SDW_TEST(unet_backward_sd15_linear_projection_finite_differences) {
  char json[1024];
  snprintf(json, sizeof json, sd15_json, "true");
  /* only proj_in / proj_out differ from the test above */
  run_fd(json, true, "proj_", "sd15 (linear projections)");
}

SDW_TEST(unet_backward_seed_no_context_finite_differences) {
  run_fd(seed_json, false, NULL, "seed without context");
}

SDW_TEST(unet_backward_seed_context_finite_differences) {
  /* the golden covers this path; a spot check of the seed's inner
   * transformer and the context gradient at another shape */
  run_fd(seed_json, true, "tfm", "seed with context (transformers)");
}

SDW_TEST(unet_backward_seed_context_pool_finite_differences) {
  /* ctx_pool: the context's token mean through a Linear into the time
   * embedding. Every parameter (the pool's, and the time MLP's whose
   * gradient it changes) and the context's gradient, which now also flows
   * through the mean. */
  static const char pool_json[] =
      "{\"_class_name\": \"SeedUNetModel\", \"in_ch\": 4, \"out_ch\": 4, \"ch\": 32,"
      " \"res_blks\": 1, \"attn_lvls\": [1], \"ch_mults\": [1, 2], \"heads\": 2, \"t_dim\": 16,"
      " \"ctx_dim\": 24, \"ctx_pool\": true}";
  run_fd(pool_json, true, NULL, "seed with ctx_pool");
}
