/* Matrix products (CPU): linear layers and batched GEMM on OpenBLAS sgemm.
 *
 * OpenBLAS threads a single large sgemm itself; a batch of many small ones
 * is spread over OpenMP threads instead (one single-threaded sgemm each:
 * OpenBLAS's OpenMP build runs serially inside a parallel region). */
#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

/* Leading dimensions passed to cblas must be >= 1 even for empty operands. */
static int ld_of(int64_t n) { return n > 1 ? (int)n : 1; }

/* Elements below which a loop is not worth waking the threads (a few
 * microseconds of work on one core). */
enum { MATMUL_PARALLEL_MIN = 1 << 16 };

/* x[*,K], w[N,K], b[N] or NULL -> y[*,N] */
sdw_status sdw_cpu_linear_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                  const sdw_tensor *b, sdw_tensor *y) {
  SDW_ASSERT(x->dtype == SDW_F32 && w->dtype == SDW_F32 && y->dtype == SDW_F32);
  SDW_ASSERT(w->ndim == 2 && x->ndim >= 1 && y->ndim == x->ndim);
  const int64_t n = w->shape[0], k = w->shape[1];
  SDW_ASSERT(x->shape[x->ndim - 1] == k && y->shape[y->ndim - 1] == n);
  for (int i = 0; i < x->ndim - 1; i++)
    SDW_ASSERT(x->shape[i] == y->shape[i]);
  if (b) SDW_ASSERT(b->dtype == SDW_F32 && b->ndim == 1 && b->shape[0] == n);
  const int64_t m = sdw_tensor_span(x, 0, x->ndim - 1);
  SDW_ASSERT(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  if (m == 0 || n == 0) return SDW_OK;
  float *yd = y->data;
  float beta = 0.0f;
  if (b) {
    /* y = broadcast bias, then the product accumulates onto it. */
    const float *bd = b->data;
    int nt = m * n >= MATMUL_PARALLEL_MIN ? ctx->num_threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++)
        yd[i * n + j] = bd[j];
    beta = 1.0f;
  }
  /* y[M,N] = x[M,K] . w[N,K]^T */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x->data,
              ld_of(k), w->data, ld_of(k), beta, yd, ld_of(n));
  return SDW_OK;
}

/* Given dy[*,N]: dx[*,K] += dy . w, dw[N,K] += dy^T . x, db[N] += column sums of dy. */
sdw_status sdw_cpu_linear_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dw,
                                   sdw_tensor *db) {
  SDW_ASSERT(x->dtype == SDW_F32 && w->dtype == SDW_F32 && dy->dtype == SDW_F32);
  SDW_ASSERT(w->ndim == 2 && x->ndim >= 1 && dy->ndim == x->ndim);
  const int64_t n = w->shape[0], k = w->shape[1];
  SDW_ASSERT(x->shape[x->ndim - 1] == k && dy->shape[dy->ndim - 1] == n);
  for (int i = 0; i < x->ndim - 1; i++)
    SDW_ASSERT(x->shape[i] == dy->shape[i]);
  if (dx) SDW_ASSERT(dx->dtype == SDW_F32 && sdw_tensor_same_shape(dx, x));
  if (dw) SDW_ASSERT(dw->dtype == SDW_F32 && sdw_tensor_same_shape(dw, w));
  if (db) SDW_ASSERT(db->dtype == SDW_F32 && db->ndim == 1 && db->shape[0] == n);
  const int64_t m = sdw_tensor_span(x, 0, x->ndim - 1);
  SDW_ASSERT(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  if (m == 0 || n == 0) return SDW_OK;
  if (dx && k > 0) /* dx[M,K] += dy[M,N] . w[N,K] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)n, 1.0f, dy->data,
                ld_of(n), w->data, ld_of(k), 1.0f, dx->data, ld_of(k));
  if (dw && k > 0) /* dw[N,K] += dy[M,N]^T . x[M,K] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)k, (int)m, 1.0f, dy->data,
                ld_of(n), x->data, ld_of(k), 1.0f, dw->data, ld_of(k));
  if (db) {
    /* Column sums in double (M reaches 10^4 rows); threads own column ranges. */
    const float *dyd = dy->data;
    float *dbd = db->data;
    enum { COLS = 64 };
    int64_t chunks = (n + COLS - 1) / COLS;
    int nt = m * n >= MATMUL_PARALLEL_MIN ? ctx->num_threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t c = 0; c < chunks; c++) {
      int64_t j0 = c * COLS, j1 = j0 + COLS < n ? j0 + COLS : n;
      double acc[COLS] = {0};
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = j0; j < j1; j++)
          acc[j - j0] += dyd[i * n + j];
      for (int64_t j = j0; j < j1; j++)
        dbd[j] += (float)acc[j - j0];
    }
  }
  return SDW_OK;
}

/* Rows and columns of the last two dims, and the product of the others. */
static void matrix_dims(const sdw_tensor *t, int64_t *batch, int64_t *rows, int64_t *cols) {
  SDW_ASSERT(t->ndim >= 2);
  *batch = sdw_tensor_span(t, 0, t->ndim - 2);
  *rows = t->shape[t->ndim - 2];
  *cols = t->shape[t->ndim - 1];
}

/* c[Bt,M,N] = alpha * op(a)[Bt,M,K] . op(b)[Bt,K,N] + beta * c; a is [Bt,K,M]
 * when trans_a, b is [Bt,N,K] when trans_b; leading dims flatten to Bt and
 * every operand must have the same Bt (rank 2 = a batch of one). */
sdw_status sdw_cpu_matmul(sdw_ctx *ctx, bool trans_a, bool trans_b, float alpha,
                          const sdw_tensor *a, const sdw_tensor *b, float beta, sdw_tensor *c) {
  SDW_ASSERT(a->dtype == SDW_F32 && b->dtype == SDW_F32 && c->dtype == SDW_F32);
  int64_t ba, ar, ac, bb, br, bc, bt, m, n;
  matrix_dims(a, &ba, &ar, &ac);
  matrix_dims(b, &bb, &br, &bc);
  matrix_dims(c, &bt, &m, &n);
  SDW_ASSERT_MSG(ba == bt && bb == bt, "matmul batch mismatch: a %lld, b %lld, c %lld",
                 (long long)ba, (long long)bb, (long long)bt);
  const int64_t k = trans_a ? ar : ac;
  SDW_ASSERT((trans_a ? ac : ar) == m);
  SDW_ASSERT((trans_b ? bc : br) == k && (trans_b ? br : bc) == n);
  SDW_ASSERT(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  if (bt == 0 || m == 0 || n == 0) return SDW_OK;
  const float *ad = a->data, *bd = b->data;
  float *cd = c->data;
  const int64_t sa = ar * ac, sb = br * bc, sc = m * n;
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const int lda = ld_of(ac), ldb = ld_of(bc), ldc = ld_of(n);
  /* Many small products: one per thread. Few (or one) large: OpenBLAS threads each. */
  const int nt = ctx->num_threads;
  const bool per_thread = nt > 1 && bt >= nt && (bt >= 4 * nt || bt % nt == 0);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (per_thread)
  for (int64_t i = 0; i < bt; i++)
    cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, ad + i * sa, lda, bd + i * sb,
                ldb, beta, cd + i * sc, ldc);
  return SDW_OK;
}
