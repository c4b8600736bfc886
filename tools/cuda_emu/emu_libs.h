// Reference stand-ins for the cuBLAS and cuDNN calls of kernels/cuda/gemm.cu
// and conv.cu (plain loops, double accumulation), so the emulation checks
// how sdw maps its row-major GEMMs and its (transposed) convolutions onto
// those libraries: operand order, transposes, leading dimensions, strides,
// descriptors, alpha/beta blending. Semantics as documented by NVIDIA
// (column-major GEMM; NCHW cross-correlation; beta == 0 never reads the
// output).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0 };
typedef void *cublasHandle_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum {
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75
} cublasComputeType_t;
enum { CUDA_R_32F = 0, CUBLAS_GEMM_DEFAULT = -1 };
inline const char *sdw_cublas_status_str(cublasStatus_t) { return "emu cublas error"; }

inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta,
                                                 cublasOperation_t tb, int m, int n, int k,
                                                 const void *alpha, const void *a, int, int lda,
                                                 long long sa, const void *b, int, int ldb,
                                                 long long sb, const void *beta, void *c, int,
                                                 int ldc, long long sc, int batch, int, int) {
  const float al = *(const float *)alpha, be = *(const float *)beta;
  if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m) return 7;
  for (int bt = 0; bt < batch; bt++) {
    const float *A = (const float *)a + bt * sa, *B = (const float *)b + bt * sb;
    float *C = (float *)c + bt * sc;
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        double s = 0;
        for (int l = 0; l < k; l++) {
          double av = ta == CUBLAS_OP_N ? A[i + (int64_t)l * lda] : A[l + (int64_t)i * lda];
          double bv = tb == CUBLAS_OP_N ? B[l + (int64_t)j * ldb] : B[j + (int64_t)l * ldb];
          s += av * bv;
        }
        float *cp = &C[i + (int64_t)j * ldc];
        *cp = (float)(al * s + (be == 0.0f ? 0.0 : be * (double)*cp));
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

typedef int cudnnStatus_t;
enum { CUDNN_STATUS_SUCCESS = 0, CUDNN_STATUS_BAD_PARAM = 3 };
inline const char *cudnnGetErrorString(cudnnStatus_t) { return "emu cudnn error"; }
typedef void *cudnnHandle_t;
typedef enum {
  CUDNN_DEFAULT_MATH = 0,
  CUDNN_TENSOR_OP_MATH = 1,
  CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
  CUDNN_FMA_MATH = 3
} cudnnMathType_t;
enum { CUDNN_TENSOR_NCHW = 0, CUDNN_DATA_FLOAT = 0, CUDNN_CROSS_CORRELATION = 1 };
struct emu_tensor_desc {
  int n, c, h, w;
};
struct emu_filter_desc {
  int k, c, r, s;
};
struct emu_conv_desc {
  int ph, pw, u, v, dh, dw, mode;
  cudnnMathType_t math;
};
typedef emu_tensor_desc *cudnnTensorDescriptor_t;
typedef emu_filter_desc *cudnnFilterDescriptor_t;
typedef emu_conv_desc *cudnnConvolutionDescriptor_t;
typedef int cudnnConvolutionFwdAlgo_t, cudnnConvolutionBwdDataAlgo_t,
    cudnnConvolutionBwdFilterAlgo_t;
struct emu_perf {
  int algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  int determinism;
  cudnnMathType_t mathType;
};
typedef emu_perf cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionBwdDataAlgoPerf_t,
    cudnnConvolutionBwdFilterAlgoPerf_t;

inline cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
  *d = new emu_tensor_desc{};
  return 0;
}
inline cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return 0;
}
inline cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
  *d = new emu_filter_desc{};
  return 0;
}
inline cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return 0;
}
inline cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
  *d = new emu_conv_desc{};
  return 0;
}
inline cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return 0;
}
inline cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, int, int, int n, int c,
                                                int h, int w) {
  *d = {n, c, h, w};
  return 0;
}
inline cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, int, int, int k, int c,
                                                int r, int s) {
  *d = {k, c, r, s};
  return 0;
}
inline cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw,
                                                     int u, int v, int dh, int dw, int mode, int) {
  d->ph = ph, d->pw = pw, d->u = u, d->v = v, d->dh = dh, d->dw = dw, d->mode = mode;
  return 0;
}
inline cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d,
                                                 cudnnMathType_t m) {
  d->math = m;
  return 0;
}

/* The shapes must agree: Y = conv(X, W) with the descriptor's geometry. */
inline bool emu_conv_ok(const emu_tensor_desc *x, const emu_filter_desc *w, const emu_conv_desc *c,
                        const emu_tensor_desc *y) {
  return c->mode == CUDNN_CROSS_CORRELATION && c->dh == 1 && c->dw == 1 && x->c == w->c &&
         y->c == w->k && x->n == y->n && y->h == (x->h + 2 * c->ph - w->r) / c->u + 1 &&
         y->w == (x->w + 2 * c->pw - w->s) / c->v + 1;
}
inline cudnnStatus_t emu_get(emu_perf *perf, int *found, cudnnConvolutionDescriptor_t c) {
  perf[0] = emu_perf{0, CUDNN_STATUS_SUCCESS, 1.0f, 0, 1, c->math};
  *found = 1;
  return 0;
}
inline cudnnStatus_t
cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                       cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                                       cudnnTensorDescriptor_t y, int, int *found, emu_perf *perf) {
  return emu_conv_ok(x, w, c, y) ? emu_get(perf, found, c) : CUDNN_STATUS_BAD_PARAM;
}
inline cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t dx, int, int *found, emu_perf *perf) {
  return emu_conv_ok(dx, w, c, dy) ? emu_get(perf, found, c) : CUDNN_STATUS_BAD_PARAM;
}
inline cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, int, int *found, emu_perf *perf) {
  return emu_conv_ok(x, dw, c, dy) ? emu_get(perf, found, c) : CUDNN_STATUS_BAD_PARAM;
}

/* Visits every (n, k, p, q, c, r, s) with a valid input pixel (h, w). */
template <typename F>
inline void emu_conv_loop(const emu_tensor_desc *x, const emu_filter_desc *w,
                          const emu_conv_desc *c, const emu_tensor_desc *y, F f) {
  for (int n = 0; n < y->n; n++)
    for (int k = 0; k < y->c; k++)
      for (int p = 0; p < y->h; p++)
        for (int q = 0; q < y->w; q++)
          for (int ch = 0; ch < x->c; ch++)
            for (int r = 0; r < w->r; r++)
              for (int s = 0; s < w->s; s++) {
                int h = p * c->u - c->ph + r, ww = q * c->v - c->pw + s;
                if (h < 0 || h >= x->h || ww < 0 || ww >= x->w) continue;
                int64_t xi = (((int64_t)n * x->c + ch) * x->h + h) * x->w + ww;
                int64_t wi = (((int64_t)k * w->c + ch) * w->r + r) * w->s + s;
                int64_t yi = (((int64_t)n * y->c + k) * y->h + p) * y->w + q;
                f(xi, wi, yi);
              }
}
inline void emu_blend(float *out, const std::vector<double> &acc, float alpha, float beta) {
  for (size_t i = 0; i < acc.size(); i++)
    out[i] = (float)(alpha * acc[i] + (beta == 0.0f ? 0.0 : beta * (double)out[i]));
}
inline size_t emu_count(const emu_tensor_desc *t) { return (size_t)t->n * t->c * t->h * t->w; }
inline cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t, const void *alpha,
                                             cudnnTensorDescriptor_t xd, const void *x,
                                             cudnnFilterDescriptor_t wd, const void *w,
                                             cudnnConvolutionDescriptor_t cd, int, void *, size_t,
                                             const void *beta, cudnnTensorDescriptor_t yd,
                                             void *y) {
  if (!emu_conv_ok(xd, wd, cd, yd)) return CUDNN_STATUS_BAD_PARAM;
  std::vector<double> acc(emu_count(yd));
  emu_conv_loop(xd, wd, cd, yd, [&](int64_t xi, int64_t wi, int64_t yi) {
    acc[yi] += (double)((const float *)x)[xi] * ((const float *)w)[wi];
  });
  emu_blend((float *)y, acc, *(const float *)alpha, *(const float *)beta);
  return 0;
}
inline cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t, const void *alpha,
                                                  cudnnFilterDescriptor_t wd, const void *w,
                                                  cudnnTensorDescriptor_t dyd, const void *dy,
                                                  cudnnConvolutionDescriptor_t cd, int, void *,
                                                  size_t, const void *beta,
                                                  cudnnTensorDescriptor_t dxd, void *dx) {
  if (!emu_conv_ok(dxd, wd, cd, dyd)) return CUDNN_STATUS_BAD_PARAM;
  std::vector<double> acc(emu_count(dxd));
  emu_conv_loop(dxd, wd, cd, dyd, [&](int64_t xi, int64_t wi, int64_t yi) {
    acc[xi] += (double)((const float *)dy)[yi] * ((const float *)w)[wi];
  });
  emu_blend((float *)dx, acc, *(const float *)alpha, *(const float *)beta);
  return 0;
}
inline cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t, const void *alpha,
                                                    cudnnTensorDescriptor_t xd, const void *x,
                                                    cudnnTensorDescriptor_t dyd, const void *dy,
                                                    cudnnConvolutionDescriptor_t cd, int, void *,
                                                    size_t, const void *beta,
                                                    cudnnFilterDescriptor_t dwd, void *dw) {
  if (!emu_conv_ok(xd, dwd, cd, dyd)) return CUDNN_STATUS_BAD_PARAM;
  std::vector<double> acc((size_t)dwd->k * dwd->c * dwd->r * dwd->s);
  emu_conv_loop(xd, dwd, cd, dyd, [&](int64_t xi, int64_t wi, int64_t yi) {
    acc[wi] += (double)((const float *)dy)[yi] * ((const float *)x)[xi];
  });
  emu_blend((float *)dw, acc, *(const float *)alpha, *(const float *)beta);
  return 0;
}

#define CUBLAS_TRY(expr)                                                                           \
  do {                                                                                             \
    if ((expr) != 0)                                                                               \
      return sdw_fail(SDW_ERR_DEVICE, "%s:%d: %s failed", __FILE__, __LINE__, #expr);              \
  } while (0)
#define CUDNN_TRY(expr) CUBLAS_TRY(expr)
