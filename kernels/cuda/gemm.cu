/* CUDA matrix products (kernels/ops.h): linear forward / backward and the
 * batched matmul, through cublasGemmStridedBatchedEx.
 *
 * Row-major to cuBLAS (column-major): a row-major C[M,N] is a column-major
 * C^T[N,M], so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T, i.e.
 * cuBLAS gets (B, A) in that order with the same transpose flags and leading
 * dimensions equal to the row lengths as stored.
 *
 * Arithmetic: CUBLAS_COMPUTE_32F (IEEE fp32 products, fp32 accumulate) unless
 * the ctx is in TF32 mode (CUBLAS_COMPUTE_32F_FAST_TF32). Bias: broadcast
 * into y first, then the GEMM with beta = 1; db is a deterministic column
 * sum in double. (cuBLASLt bias / GELU epilogues are the next step for
 * speed; correctness first.) */
#include "kernels/cuda/cuda_common.h"

namespace {

__global__ void bias_rows_kernel(float *y, const float *b, int64_t rows, int64_t n) {
  CUDA_FOR(i, rows * n) y[i] = b[i % n];
}

cublasComputeType_t compute_type(const sdw_ctx *ctx) {
  return cuda_impl(ctx)->math == SDW_CUDA_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                    : CUBLAS_COMPUTE_32F;
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

/* Row-major C[M,N] (+)= alpha op(A) op(B) over batch, with A stored [M,K]
 * (or [K,M] when ta), B stored [K,N] (or [N,K] when tb). */
sdw_status gemm_rm(sdw_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t stride_a, const float *b, int64_t stride_b, float beta,
                   float *c, int64_t stride_c, int64_t batch) {
  SDW_ASSERT(fits_int(m) && fits_int(n) && fits_int(k) && fits_int(batch));
  if (!m || !n || !batch) return SDW_OK;
  int lda = (int)(ta ? m : k), ldb = (int)(tb ? k : n);
  lda = lda ? lda : 1;
  ldb = ldb ? ldb : 1;
  CUBLAS_TRY(cublasGemmStridedBatchedEx(
      cuda_impl(ctx)->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n,
      (int)m, (int)k, &alpha, b, CUDA_R_32F, ldb, stride_b, a, CUDA_R_32F, lda, stride_a, &beta, c,
      CUDA_R_32F, (int)n, stride_c, (int)batch, compute_type(ctx), CUBLAS_GEMM_DEFAULT));
  return SDW_OK;
}

} // namespace

sdw_status sdw_cuda_linear_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *b, sdw_tensor *y) {
  cuda_check_f32(x);
  cuda_check_f32(w);
  cuda_check_f32(y);
  SDW_ASSERT(x->ndim >= 1 && w->ndim == 2 && y->ndim == x->ndim);
  int64_t k = x->shape[x->ndim - 1], n = w->shape[0], m = sdw_tensor_span(x, 0, x->ndim - 1);
  SDW_ASSERT(w->shape[1] == k && y->shape[y->ndim - 1] == n);
  for (int i = 0; i + 1 < x->ndim; i++)
    SDW_ASSERT(x->shape[i] == y->shape[i]);
  float beta = 0.0f;
  if (b) {
    cuda_check_f32(b);
    SDW_ASSERT(b->ndim == 1 && b->shape[0] == n);
    if (m * n > 0) {
      bias_rows_kernel<<<cuda_grid(m * n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
          (float *)y->data, (const float *)b->data, m, n);
      CUDA_LAUNCH_TRY();
    }
    beta = 1.0f;
  }
  /* y[M,N] = x[M,K] w[N,K]^T */
  return gemm_rm(ctx, false, true, m, n, k, 1.0f, (const float *)x->data, 0, (const float *)w->data,
                 0, beta, (float *)y->data, 0, 1);
}

sdw_status sdw_cuda_linear_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                    const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dw,
                                    sdw_tensor *db) {
  cuda_check_f32(x);
  cuda_check_f32(w);
  cuda_check_f32(dy);
  SDW_ASSERT(x->ndim >= 1 && w->ndim == 2 && dy->ndim == x->ndim);
  int64_t k = x->shape[x->ndim - 1], n = w->shape[0], m = sdw_tensor_span(x, 0, x->ndim - 1);
  SDW_ASSERT(w->shape[1] == k && dy->shape[dy->ndim - 1] == n);
  const float *xp = (const float *)x->data, *wp = (const float *)w->data;
  const float *dyp = (const float *)dy->data;
  if (dx) {
    cuda_check_same_f32(x, dx);
    /* dx[M,K] += dy[M,N] w[N,K] */
    SDW_TRY(
        gemm_rm(ctx, false, false, m, k, n, 1.0f, dyp, 0, wp, 0, 1.0f, (float *)dx->data, 0, 1));
  }
  if (dw) {
    cuda_check_same_f32(w, dw);
    /* dw[N,K] += dy^T[N,M] x[M,K] */
    SDW_TRY(gemm_rm(ctx, true, false, n, k, m, 1.0f, dyp, 0, xp, 0, 1.0f, (float *)dw->data, 0, 1));
  }
  if (db) {
    cuda_check_f32(db);
    SDW_ASSERT(db->ndim == 1 && db->shape[0] == n);
    SDW_TRY(sdw_cuda_column_sum(ctx, dyp, m, n, (float *)db->data));
  }
  return SDW_OK;
}

/* An operand [*, R, C]: batch (leading dims flattened) and the matrix dims. */
static void mm_dims(const sdw_tensor *t, int64_t *batch, int64_t *r, int64_t *c) {
  cuda_check_f32(t);
  SDW_ASSERT(t->ndim >= 2);
  *batch = sdw_tensor_span(t, 0, t->ndim - 2);
  *r = t->shape[t->ndim - 2];
  *c = t->shape[t->ndim - 1];
}

sdw_status sdw_cuda_matmul(sdw_ctx *ctx, bool trans_a, bool trans_b, float alpha,
                           const sdw_tensor *a, const sdw_tensor *b, float beta, sdw_tensor *c) {
  int64_t ba, ar, ac, bb, br, bc, bcn, cr, cc;
  mm_dims(a, &ba, &ar, &ac);
  mm_dims(b, &bb, &br, &bc);
  mm_dims(c, &bcn, &cr, &cc);
  SDW_ASSERT(ba == bb && ba == bcn);
  int64_t m = trans_a ? ac : ar, k = trans_a ? ar : ac;
  int64_t kb = trans_b ? bc : br, n = trans_b ? br : bc;
  SDW_ASSERT(k == kb && cr == m && cc == n);
  if (beta == 0.0f && m * n * ba > 0 && k == 0) {
    /* cuBLAS with k == 0 scales C by beta; beta 0 must not read garbage */
    CUDA_TRY(cudaMemsetAsync(c->data, 0, sdw_tensor_nbytes(c), cuda_stream(ctx)));
    return SDW_OK;
  }
  return gemm_rm(ctx, trans_a, trans_b, m, n, k, alpha, (const float *)a->data, ar * ac,
                 (const float *)b->data, br * bc, beta, (float *)c->data, m * n, ba);
}
