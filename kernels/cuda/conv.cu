/* CUDA convolutions (kernels/ops.h): conv2d and ConvTranspose2d, forward and
 * backward, NCHW fp32 through cuDNN's convolution API.
 *
 * Everything is one of three cuDNN calls on a "conv" X[N,C,H,W] * W[K,C,R,S]
 * -> Y[N,K,P,Q] (cross-correlation, as PyTorch):
 *   conv2d            y = fwd(x, w);  dx += bwd_data(w, dy);  dw += bwd_filter(x, dy)
 *   conv_transpose2d  the adjoint: a conv with X = y, Y = x (w[Ci,Co,KH,KW] is
 *                     then W[K=Ci, C=Co]): y = bwd_data(w, x),
 *                     dx += fwd(dy, w), dw += bwd_filter(dy, x)
 * Accumulation uses cuDNN's beta = 1 blending; bias and its gradient are our
 * kernels (deterministic channel sums in double).
 *
 * Algorithms come from cuDNN's heuristics (cudnnGet*_v7) and are cached per
 * (direction, shape, math mode). FP32 mode sets CUDNN_FMA_MATH and takes only
 * algorithms without tensor-op math (no TF32); TF32 mode lets cuDNN pick. */
#include <array>
#include <map>

#include "kernels/cuda/cuda_common.h"

namespace {

enum Dir { kFwd = 0, kBwdData = 1, kBwdFilter = 2 };

struct Algo {
  int algo;
  cudnnMathType_t math;
  size_t workspace;
};
typedef std::array<int64_t, 12> Key;
typedef std::map<Key, Algo> Cache;

/* Descriptors of one conv geometry, released on scope exit. */
struct Desc {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ~Desc() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

struct Geom {
  int n, c, h, w; /* X */
  int k, r, s;    /* W[K,C,R,S] */
  int p, q;       /* Y spatial */
  int stride, pad;
};

bool fits(int64_t v) { return v > 0 && v <= INT32_MAX; }

sdw_status desc_make(const Geom &g, cudnnMathType_t math, Desc *d) {
  CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
  CUDNN_TRY(cudnnCreateTensorDescriptor(&d->y));
  CUDNN_TRY(cudnnCreateFilterDescriptor(&d->w));
  CUDNN_TRY(cudnnCreateConvolutionDescriptor(&d->conv));
  CUDNN_TRY(
      cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.c, g.h, g.w));
  CUDNN_TRY(
      cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.k, g.p, g.q));
  CUDNN_TRY(
      cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.k, g.c, g.r, g.s));
  CUDNN_TRY(cudnnSetConvolution2dDescriptor(d->conv, g.pad, g.pad, g.stride, g.stride, 1, 1,
                                            CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_TRY(cudnnSetConvolutionMathType(d->conv, math));
  return SDW_OK;
}

bool math_ok(cudnnMathType_t m, bool strict) {
  return !strict || (m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

enum { kMaxAlgos = 16 };
const size_t kMaxWorkspace = (size_t)2 << 30;

/* The cached algorithm for dir on g (heuristics on a miss). */
sdw_status algo_get(sdw_ctx *ctx, Dir dir, const Geom &g, Desc *d, Algo *out) {
  sdw_cuda_impl *im = cuda_impl(ctx);
  bool strict = im->math == SDW_CUDA_MATH_FP32;
  if (!im->conv_cache) im->conv_cache = new Cache();
  Cache &cache = *(Cache *)im->conv_cache;
  Key key = {dir, g.n, g.c, g.h, g.w, g.k, g.r, g.s, g.stride, g.pad, strict, 0};
  auto it = cache.find(key);
  if (it != cache.end()) {
    *out = it->second;
    return SDW_OK;
  }
  int found = 0;
  Algo best = {-1, CUDNN_FMA_MATH, 0};
  if (dir == kFwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
    CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(im->dnn, d->x, d->w, d->conv, d->y, kMaxAlgos,
                                                     &found, perf));
    for (int i = 0; i < found && best.algo < 0; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(perf[i].mathType, strict) &&
          perf[i].memory <= kMaxWorkspace)
        best = {(int)perf[i].algo, perf[i].mathType, perf[i].memory};
  } else if (dir == kBwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
    CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(im->dnn, d->w, d->y, d->conv, d->x,
                                                          kMaxAlgos, &found, perf));
    for (int i = 0; i < found && best.algo < 0; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(perf[i].mathType, strict) &&
          perf[i].memory <= kMaxWorkspace)
        best = {(int)perf[i].algo, perf[i].mathType, perf[i].memory};
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
    CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(im->dnn, d->x, d->y, d->conv, d->w,
                                                            kMaxAlgos, &found, perf));
    for (int i = 0; i < found && best.algo < 0; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && math_ok(perf[i].mathType, strict) &&
          perf[i].memory <= kMaxWorkspace)
        best = {(int)perf[i].algo, perf[i].mathType, perf[i].memory};
  }
  if (best.algo < 0)
    return sdw_fail(SDW_ERR_DEVICE,
                    "cuDNN offers no %s algorithm for a %dx%d conv of [%d,%d,%d,%d] -> %d channels "
                    "(stride %d, pad %d)%s",
                    dir == kFwd       ? "forward"
                    : dir == kBwdData ? "backward-data"
                                      : "backward-filter",
                    g.r, g.s, g.n, g.c, g.h, g.w, g.k, g.stride, g.pad,
                    strict ? " without TF32" : "");
  if (strict) best.math = CUDNN_FMA_MATH;
  cache[key] = best;
  *out = best;
  return SDW_OK;
}

/* One cuDNN call: dir on g with device pointers; out = alpha*result + beta*out. */
sdw_status conv_run(sdw_ctx *ctx, Dir dir, const Geom &g, const float *a, const float *b,
                    float beta, float *out) {
  sdw_cuda_impl *im = cuda_impl(ctx);
  Desc d;
  cudnnMathType_t math = im->math == SDW_CUDA_MATH_FP32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  SDW_TRY(desc_make(g, math, &d));
  Algo algo;
  SDW_TRY(algo_get(ctx, dir, g, &d, &algo));
  CUDNN_TRY(cudnnSetConvolutionMathType(d.conv, algo.math));
  void *ws = NULL;
  if (algo.workspace) SDW_TRY(sdw_cuda_workspace(ctx, algo.workspace, &ws));
  const float alpha = 1.0f;
  if (dir == kFwd) /* a = X, b = W, out = Y */
    CUDNN_TRY(cudnnConvolutionForward(im->dnn, &alpha, d.x, a, d.w, b, d.conv,
                                      (cudnnConvolutionFwdAlgo_t)algo.algo, ws, algo.workspace,
                                      &beta, d.y, out));
  else if (dir == kBwdData) /* a = W, b = dY, out = dX */
    CUDNN_TRY(cudnnConvolutionBackwardData(im->dnn, &alpha, d.w, a, d.y, b, d.conv,
                                           (cudnnConvolutionBwdDataAlgo_t)algo.algo, ws,
                                           algo.workspace, &beta, d.x, out));
  else /* a = X, b = dY, out = dW */
    CUDNN_TRY(cudnnConvolutionBackwardFilter(im->dnn, &alpha, d.x, a, d.y, b, d.conv,
                                             (cudnnConvolutionBwdFilterAlgo_t)algo.algo, ws,
                                             algo.workspace, &beta, d.w, out));
  return SDW_OK;
}

void check4(const sdw_tensor *t) {
  cuda_check_f32(t);
  SDW_ASSERT(t->ndim == 4);
}

/* conv2d geometry from x[N,Ci,H,W], w[Co,Ci,KH,KW] and the output y/dy. */
Geom conv_geom(const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *y, int stride, int pad) {
  check4(x);
  check4(w);
  check4(y);
  SDW_ASSERT(stride >= 1 && pad >= 0);
  SDW_ASSERT(w->shape[1] == x->shape[1]);
  int64_t ho = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
  int64_t wo = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
  SDW_ASSERT(ho > 0 && wo > 0);
  SDW_ASSERT(y->shape[0] == x->shape[0] && y->shape[1] == w->shape[0] && y->shape[2] == ho &&
             y->shape[3] == wo);
  for (int i = 0; i < 4; i++)
    SDW_ASSERT(fits(x->shape[i]) && fits(w->shape[i]));
  Geom g = {(int)x->shape[0],
            (int)x->shape[1],
            (int)x->shape[2],
            (int)x->shape[3],
            (int)w->shape[0],
            (int)w->shape[2],
            (int)w->shape[3],
            (int)ho,
            (int)wo,
            stride,
            pad};
  return g;
}

/* ConvTranspose2d x[N,Ci,H,W], w[Ci,Co,KH,KW] -> y[N,Co,Ho,Wo] as the conv
 * X = y, W = w (K = Ci, C = Co), Y = x. */
Geom convt_geom(const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *y, int stride,
                int pad) {
  check4(x);
  check4(w);
  check4(y);
  SDW_ASSERT(stride >= 1 && pad >= 0);
  SDW_ASSERT(w->shape[0] == x->shape[1]);
  SDW_ASSERT(y->shape[0] == x->shape[0] && y->shape[1] == w->shape[1]);
  SDW_ASSERT(y->shape[2] == (x->shape[2] - 1) * stride - 2 * pad + w->shape[2]);
  SDW_ASSERT(y->shape[3] == (x->shape[3] - 1) * stride - 2 * pad + w->shape[3]);
  for (int i = 0; i < 4; i++)
    SDW_ASSERT(fits(x->shape[i]) && fits(w->shape[i]) && fits(y->shape[i]));
  Geom g = {(int)y->shape[0],
            (int)y->shape[1],
            (int)y->shape[2],
            (int)y->shape[3],
            (int)w->shape[0],
            (int)w->shape[2],
            (int)w->shape[3],
            (int)x->shape[2],
            (int)x->shape[3],
            stride,
            pad};
  return g;
}

} // namespace

void sdw_cuda_conv_cache_free(void *cache);
void sdw_cuda_conv_cache_free(void *cache) { delete (Cache *)cache; }

sdw_status sdw_cuda_conv2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *b, int stride, int pad, sdw_tensor *y) {
  Geom g = conv_geom(x, w, y, stride, pad);
  SDW_TRY(conv_run(ctx, kFwd, g, (const float *)x->data, (const float *)w->data, 0.0f,
                   (float *)y->data));
  if (b) {
    cuda_check_f32(b);
    SDW_ASSERT(b->ndim == 1 && b->shape[0] == g.k);
    SDW_TRY(sdw_cuda_add_bias_nchw(ctx, (float *)y->data, (const float *)b->data, g.n, g.k,
                                   (int64_t)g.p * g.q));
  }
  return SDW_OK;
}

sdw_status sdw_cuda_conv2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                    const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx,
                                    sdw_tensor *dw, sdw_tensor *db) {
  Geom g = conv_geom(x, w, dy, stride, pad);
  if (dx) {
    cuda_check_same_f32(x, dx);
    SDW_TRY(conv_run(ctx, kBwdData, g, (const float *)w->data, (const float *)dy->data, 1.0f,
                     (float *)dx->data));
  }
  if (dw) {
    cuda_check_same_f32(w, dw);
    SDW_TRY(conv_run(ctx, kBwdFilter, g, (const float *)x->data, (const float *)dy->data, 1.0f,
                     (float *)dw->data));
  }
  if (db) {
    cuda_check_f32(db);
    SDW_ASSERT(db->ndim == 1 && db->shape[0] == g.k);
    SDW_TRY(sdw_cuda_channel_sum(ctx, (const float *)dy->data, g.n, g.k, (int64_t)g.p * g.q,
                                 (float *)db->data));
  }
  return SDW_OK;
}

sdw_status sdw_cuda_conv_transpose2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                             const sdw_tensor *b, int stride, int pad,
                                             sdw_tensor *y) {
  Geom g = convt_geom(x, w, y, stride, pad);
  SDW_TRY(conv_run(ctx, kBwdData, g, (const float *)w->data, (const float *)x->data, 0.0f,
                   (float *)y->data));
  if (b) {
    cuda_check_f32(b);
    SDW_ASSERT(b->ndim == 1 && b->shape[0] == g.c);
    SDW_TRY(sdw_cuda_add_bias_nchw(ctx, (float *)y->data, (const float *)b->data, g.n, g.c,
                                   (int64_t)g.h * g.w));
  }
  return SDW_OK;
}

sdw_status sdw_cuda_conv_transpose2d_backward(sdw_ctx *ctx, const sdw_tensor *x,
                                              const sdw_tensor *w, const sdw_tensor *dy, int stride,
                                              int pad, sdw_tensor *dx, sdw_tensor *dw,
                                              sdw_tensor *db) {
  Geom g = convt_geom(x, w, dy, stride, pad);
  if (dx) {
    cuda_check_same_f32(x, dx);
    SDW_TRY(conv_run(ctx, kFwd, g, (const float *)dy->data, (const float *)w->data, 1.0f,
                     (float *)dx->data));
  }
  if (dw) {
    cuda_check_same_f32(w, dw);
    SDW_TRY(conv_run(ctx, kBwdFilter, g, (const float *)dy->data, (const float *)x->data, 1.0f,
                     (float *)dw->data));
  }
  if (db) {
    cuda_check_f32(db);
    SDW_ASSERT(db->ndim == 1 && db->shape[0] == g.c);
    SDW_TRY(sdw_cuda_channel_sum(ctx, (const float *)dy->data, g.n, g.c, (int64_t)g.h * g.w,
                                 (float *)db->data));
  }
  return SDW_OK;
}
