/* Timestep embedding and token embedding of the CPU backend against double
 * references of the published formulas written here; the embedding backward
 * against central finite differences of L = sum(dy .* table[ids]).
 *
 * Tolerances:
 *  - timestep embedding 1e-7 normwise: the op evaluates in double and rounds
 *    each value once, so |got - want| <= 2^-24 (6e-8) with max|want| ~ 1; an
 *    f32 evaluation of the angle (t up to 999) would be off by ~1e-4 and a
 *    wrong divisor (half vs half - 1) or sin/cos order by O(1).
 *  - lookup: bitwise copies of table rows.
 *  - backward 5e-7 normwise: L is linear in the table, so the central
 *    difference (h = 1e-3) has no truncation error, rounding ~1e-13; the op
 *    adds k dy rows into one table row for an id repeated k times (k <= 4
 *    in the finite-difference cases), k roundings of the running sum:
 *    <= 4u = 2.4e-7 relative to the largest element. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_ref.h"

/* --- timestep embedding ----------------------------------------------------------- */

/* The seed UNet (src/model.py): half = dim/2,
 * freq[i] = exp(-ln(10000) i / (half - 1)), emb = [sin(t freq), cos(t freq)]. */
static void ref_seed_embedding(const double *t, int n, int dim, double *y) {
  int half = dim / 2;
  for (int r = 0; r < n; r++)
    for (int i = 0; i < half; i++) {
      double f = exp(-log(10000.0) * i / (half - 1));
      y[r * dim + i] = sin(t[r] * f);
      y[r * dim + half + i] = cos(t[r] * f);
    }
}

/* diffusers get_timestep_embedding(t, dim, flip_sin_to_cos=True,
 * downscale_freq_shift=0, scale=1, max_period=10000):
 * exponent = -ln(max_period) arange(half) / (half - shift); emb = t exp(exponent);
 * cat[sin, cos], flipped to cat[cos, sin]; an odd dim gets a zero column. */
static void ref_diffusers_embedding(const double *t, int n, int dim, double *y) {
  int half = dim / 2;
  for (int r = 0; r < n; r++) {
    for (int i = 0; i < half; i++) {
      double e = t[r] * exp(-log(10000.0) * i / (half - 0.0));
      y[r * dim + i] = cos(e);
      y[r * dim + half + i] = sin(e);
    }
    if (dim % 2) y[r * dim + dim - 1] = 0.0;
  }
}

static void check_timestep(sdw_ctx *ctx, const float *t, int n, int dim, bool seed) {
  float *y = sdw_test_alloc_guarded((size_t)n * dim, "emb");
  sdw_tensor tt = sdw_tensor_1d((void *)t, SDW_F32, n), ty = sdw_tensor_2d(y, SDW_F32, n, dim);
  sdw_timestep_embedding_params p = seed ? (sdw_timestep_embedding_params){10000.0, 1.0, false}
                                         : (sdw_timestep_embedding_params){10000.0, 0.0, true};
  CHECK_OK(ctx->ops->timestep_embedding(ctx, &tt, &p, &ty));
  double *td = ref_to_double(t, (size_t)n), *want = ref_zeros((size_t)n * dim);
  if (seed)
    ref_seed_embedding(td, n, dim, want);
  else
    ref_diffusers_embedding(td, n, dim, want);
  char what[64];
  snprintf(what, sizeof what, "%s timestep embedding dim %d", seed ? "seed" : "diffusers", dim);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, want, (size_t)n * dim), 1e-7, what);
  if (dim % 2) /* written, and exactly zero */
    for (int r = 0; r < n; r++)
      CHECK(y[r * dim + dim - 1] == 0.0f && !signbit(y[r * dim + dim - 1]));
  CHECK_GUARD(y);
  sdw_test_free_guarded(y);
  free(td), free(want);
}

SDW_TEST(timestep_embedding_seed_and_diffusers_formulas) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(401);
  float t[12] = {0, 1, 2, 499, 500, 998, 999, 0};
  for (int i = 8; i < 12; i++)
    t[i] = (float)sdw_test_rng_int(&r, 0, 999);
  const int seed_dims[] = {320, 4, 33, 128};
  for (int i = 0; i < 4; i++)
    check_timestep(ctx, t, 12, seed_dims[i], true);
  const int diff_dims[] = {320, 1, 2, 33, 1280};
  for (int i = 0; i < 5; i++)
    check_timestep(ctx, t, 12, diff_dims[i], false);
  /* Known values: t = 1, seed dim 4 (half 2, freqs 1 and 1e-4):
   * [sin 1, sin 1e-4, cos 1, cos 1e-4]. */
  float one = 1.0f, y[4];
  sdw_tensor tt = sdw_tensor_1d(&one, SDW_F32, 1), ty = sdw_tensor_2d(y, SDW_F32, 1, 4);
  sdw_timestep_embedding_params seed = {10000.0, 1.0, false};
  CHECK_OK(ctx->ops->timestep_embedding(ctx, &tt, &seed, &ty));
  CHECK(y[0] == (float)sin(1.0) && y[1] == (float)sin(1e-4) && y[2] == (float)cos(1.0) &&
        y[3] == (float)cos(1e-4));
  sdw_ctx_destroy(ctx);
}

/* --- token embedding ----------------------------------------------------------------- */

static int64_t id_at(const void *ids, sdw_dtype dt, size_t i) {
  return dt == SDW_I32 ? ((const int32_t *)ids)[i] : ((const int64_t *)ids)[i];
}

typedef struct emb_arg {
  size_t count, dim;
  const void *ids;
  sdw_dtype dt;
  const double *dy;
  double *table;
} emb_arg;

static double emb_loss(void *p) {
  emb_arg *a = p;
  double l = 0.0;
  for (size_t i = 0; i < a->count; i++) {
    const double *row = a->table + id_at(a->ids, a->dt, i) * a->dim;
    for (size_t j = 0; j < a->dim; j++)
      l += a->dy[i * a->dim + j] * row[j];
  }
  return l;
}

/* ids of shape [b, t] (or [t] when b == 0) drawn from [0, vocab). */
static void check_embedding(sdw_ctx *ctx, sdw_dtype dt, int b, int t, int vocab, int dim,
                            sdw_test_rng *r) {
  size_t count = (size_t)(b ? b : 1) * t, esz = dt == SDW_I32 ? 4 : 8;
  void *ids = sdw_test_alloc_guarded_bytes(count * esz, "ids");
  for (size_t i = 0; i < count; i++) {
    int64_t v = sdw_test_rng_int(r, 0, vocab - 1);
    if (i % 5 == 3) v = id_at(ids, dt, i - 1); /* repeats */
    if (dt == SDW_I32)
      ((int32_t *)ids)[i] = (int32_t)v;
    else
      ((int64_t *)ids)[i] = v;
  }
  size_t nt = (size_t)vocab * dim, ny = count * dim;
  float *table = ref_normal(r, nt, 1.0f, 0.0f, "table"), *y = sdw_test_alloc_guarded(ny, "y");
  float *dy = ref_normal(r, ny, 1.0f, 0.0f, "dy"),
        *dt_buf = ref_normal(r, nt, 0.5f, 0.0f, "dtable");
  float *dt0 = ref_clone(dt_buf, nt, "dtable0");
  sdw_tensor tids = b ? sdw_tensor_2d(ids, dt, b, t) : sdw_tensor_1d(ids, dt, t);
  sdw_tensor ty = b ? sdw_tensor_3d(y, SDW_F32, b, t, dim) : sdw_tensor_2d(y, SDW_F32, t, dim);
  sdw_tensor tdy = ty;
  tdy.data = dy;
  sdw_tensor ttab = sdw_tensor_2d(table, SDW_F32, vocab, dim), tdt = ttab;
  tdt.data = dt_buf;
  CHECK_OK(ctx->ops->embedding_forward(ctx, &tids, &ttab, &ty));
  int bad = 0;
  for (size_t i = 0; i < count; i++)
    bad += memcmp(y + i * dim, table + id_at(ids, dt, i) * dim, dim * sizeof(float)) != 0;
  CHECK_MSG(bad == 0, "embedding_forward: %d wrong rows", bad);

  CHECK_OK(ctx->ops->embedding_backward(ctx, &tids, &tdy, &tdt));
  double *g = ref_zeros(nt), *dyd = ref_to_double(dy, ny);
  if (nt * count * dim <= 4000000) {
    double *tabd = ref_to_double(table, nt);
    emb_arg arg = {count, (size_t)dim, ids, dt, dyd, tabd};
    ref_fd_grad(emb_loss, &arg, tabd, nt, 1e-3, g);
    free(tabd);
  } else { /* large (threaded) case: the scatter-add in double */
    for (size_t i = 0; i < count; i++)
      for (int j = 0; j < dim; j++)
        g[id_at(ids, dt, i) * dim + j] += dyd[i * dim + j];
  }
  double *want = ref_accumulated(dt0, g, nt);
  CHECK_REL(sdw_test_rel_err_f32_f64(dt_buf, want, nt), 5e-7, "embedding_backward");
  CHECK_OK(ctx->ops->embedding_backward(ctx, &tids, &tdy, NULL));
  void *bufs[] = {ids, table, y, dy, dt_buf, dt0};
  for (size_t i = 0; i < 6; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(g), free(dyd), free(want);
}

SDW_TEST(embedding_lookup_and_scatter_add) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(402);
  check_embedding(ctx, SDW_I32, 2, 5, 11, 6, &r);
  check_embedding(ctx, SDW_I64, 0, 7, 3, 5, &r);
  check_embedding(ctx, SDW_I64, 3, 4, 9, 1, &r);
  check_embedding(ctx, SDW_I32, 1, 1, 1, 13, &r);
  check_embedding(ctx, SDW_I64, 2, 77, 1000, 96, &r); /* threaded, column-split backward */
  sdw_ctx_destroy(ctx);
}

SDW_TEST(embedding_rejects_out_of_range_ids) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  float table[4 * 3] = {0}, dtable[4 * 3] = {0};
  float *y = sdw_test_alloc_guarded(3 * 3, "y"), dy[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t bad_ids[][3] = {{0, 4, 1}, {2, -1, 0}, {0, 1, 1LL << 40}};
  const char *msgs[] = {"token id 4 is outside the vocabulary [0, 4)",
                        "token id -1 is outside the vocabulary [0, 4)",
                        "token id 1099511627776 is outside the vocabulary [0, 4)"};
  sdw_tensor ttab = sdw_tensor_2d(table, SDW_F32, 4, 3), tdt = sdw_tensor_2d(dtable, SDW_F32, 4, 3);
  sdw_tensor ty = sdw_tensor_2d(y, SDW_F32, 3, 3), tdy = sdw_tensor_2d(dy, SDW_F32, 3, 3);
  for (int k = 0; k < 3; k++) {
    sdw_tensor ids = sdw_tensor_1d((void *)bad_ids[k], SDW_I64, 3);
    CHECK(ctx->ops->embedding_forward(ctx, &ids, &ttab, &ty) == SDW_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strcmp(sdw_last_error(), msgs[k]) == 0, "message: %s", sdw_last_error());
    CHECK(ctx->ops->embedding_backward(ctx, &ids, &tdy, &tdt) == SDW_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strcmp(sdw_last_error(), msgs[k]) == 0, "message: %s", sdw_last_error());
  }
  int32_t ids32[3] = {3, 0, 7};
  sdw_tensor t32 = sdw_tensor_1d(ids32, SDW_I32, 3);
  CHECK(ctx->ops->embedding_forward(ctx, &t32, &ttab, &ty) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(sdw_last_error(), "token id 7 is outside the vocabulary [0, 4)") == 0);
  /* nothing was written: y keeps the guard's NaN fill, dtable its zeros */
  uint32_t bits;
  int touched = 0;
  for (int i = 0; i < 9; i++)
    memcpy(&bits, &y[i], 4), touched += bits != 0xffffffffu;
  for (int i = 0; i < 12; i++)
    touched += dtable[i] != 0.0f;
  CHECK(touched == 0);
  CHECK_GUARD(y);
  sdw_test_free_guarded(y);
  sdw_ctx_destroy(ctx);
}
