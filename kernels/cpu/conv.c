/* CPU convolutions: conv2d and ConvTranspose2d, forward and backward, as
 * im2col / col2im (kernels/cpu/im2col.h) around OpenBLAS sgemm.
 *
 *   conv2d forward     y[n] (Co x P)   = w (Co x K) @ col(x[n]) (K x P)        K = Ci*KH*KW
 *   conv2d dW          dw (Co x K)    += dy[n] (Co x P) @ col(x[n])^T           P = Ho*Wo
 *   conv2d dX          dx[n]          += col2im(w^T (K x Co) @ dy[n])
 *
 * ConvTranspose2d is the adjoint of a conv2d whose input is y and output is
 * x (same kernel, stride, pad), with w[Ci,Co,KH,KW] read as (Ci x Co*KH*KW):
 * its forward is that conv's data gradient, its dX that conv's forward, its
 * dW that conv's weight gradient with the roles of x and dy swapped.
 *
 * The column matrix is built one band of output rows at a time
 * (sdw_conv_band_rows) so scratch stays bounded on large planes (the VAE's
 * 512x512 convs) while each band's GEMM is big enough that packing the
 * weights again per band costs little (at 32x32 and below a band is the
 * whole image). Measured on one core, the hot 3x3 convs run at ~91-97% of
 * the sgemm ceiling. A 1x1 stride-1 pad-0 convolution needs no column
 * matrix: the NCHW plane already is one. */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/im2col.h"

static void check_f32_4d(const sdw_tensor *t) {
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
  SDW_ASSERT(t->ndim == 4);
}

static void check_bias(const sdw_tensor *b, int64_t channels) {
  SDW_ASSERT(b->dtype == SDW_F32);
  SDW_ASSERT(b->ndim == 1 && b->shape[0] == channels);
}

static int num_threads_of(const sdw_ctx *ctx) {
  return ctx->num_threads > 0 ? ctx->num_threads : 1;
}

/* y[Co, P] (row stride ldy) = b[co] on every row, or 0 without b. */
static void fill_rows(float *y, int Co, int P, int64_t ldy, const float *b, int nt) {
#pragma omp parallel for num_threads(nt)                                                           \
    schedule(static) if ((int64_t)Co * P >= SDW_CONV_PARALLEL_MIN)
  for (int co = 0; co < Co; co++) {
    float *row = y + co * ldy;
    const float v = b ? b[co] : 0.0f;
    for (int i = 0; i < P; i++)
      row[i] = v;
  }
}

/* db[c] += sum over n and space of dy[N, C, S]. */
static void bias_grad(const float *dy, int64_t N, int64_t C, int64_t S, float *db, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (N * C * S >= SDW_CONV_PARALLEL_MIN)
  for (int64_t c = 0; c < C; c++) {
    double acc = 0.0;
    for (int64_t n = 0; n < N; n++) {
      const float *p = dy + (n * C + c) * S;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < S; i++)
        acc += p[i];
    }
    db[c] += (float)acc;
  }
}

static bool is_pointwise(int KH, int KW, int stride, int pad) {
  return KH == 1 && KW == 1 && stride == 1 && pad == 0;
}

/* ------------------------------------------------------------------------- */

sdw_status sdw_cpu_conv2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                  const sdw_tensor *b, int stride, int pad, sdw_tensor *y) {
  check_f32_4d(x);
  check_f32_4d(w);
  check_f32_4d(y);
  SDW_ASSERT(stride >= 1 && pad >= 0);
  const int N = (int)x->shape[0], Co = (int)w->shape[0];
  sdw_conv_geom g = {.C = (int)x->shape[1],
                     .H = (int)x->shape[2],
                     .W = (int)x->shape[3],
                     .KH = (int)w->shape[2],
                     .KW = (int)w->shape[3],
                     .stride = stride,
                     .pad = pad};
  sdw_conv_geom_finish(&g);
  SDW_ASSERT(w->shape[1] == g.C);
  SDW_ASSERT(g.Ho > 0 && g.Wo > 0);
  SDW_ASSERT(y->shape[0] == N && y->shape[1] == Co && y->shape[2] == g.Ho && y->shape[3] == g.Wo);
  if (b) check_bias(b, Co);

  const int nt = num_threads_of(ctx);
  const int K = g.C * g.KH * g.KW;
  const int64_t P = (int64_t)g.Ho * g.Wo, in_plane = (int64_t)g.C * g.H * g.W;
  const float *xd = x->data, *wd = w->data, *bd = b ? b->data : NULL;
  float *yd = y->data;
  const bool pointwise = is_pointwise(g.KH, g.KW, stride, pad);
  const int rows = pointwise ? g.Ho : sdw_conv_band_rows(&g, K, (int64_t)Co * K);

  const size_t mark = sdw_arena_mark(ctx->scratch);
  float *col = NULL;
  if (!pointwise) {
    col = sdw_arena_alloc(ctx->scratch, sizeof(float) * (size_t)K * rows * g.Wo);
    if (!col) return SDW_ERR_OUT_OF_MEMORY;
  }
  for (int n = 0; n < N; n++) {
    const float *xn = xd + n * in_plane;
    float *yn = yd + (int64_t)n * Co * P;
    for (int oh0 = 0; oh0 < g.Ho; oh0 += rows) {
      const int oh1 = oh0 + rows < g.Ho ? oh0 + rows : g.Ho;
      const int cols = (oh1 - oh0) * g.Wo;
      float *yb = yn + (int64_t)oh0 * g.Wo;
      fill_rows(yb, Co, cols, P, bd, nt);
      const float *bmat = xn + (int64_t)oh0 * g.Wo;
      int64_t ldb = P;
      if (!pointwise) {
        sdw_im2col(&g, xn, oh0, oh1, col, nt);
        bmat = col, ldb = cols;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, cols, K, 1.0f, wd, K, bmat,
                  (int)ldb, 1.0f, yb, (int)P);
    }
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}

sdw_status sdw_cpu_conv2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx,
                                   sdw_tensor *dw, sdw_tensor *db) {
  check_f32_4d(x);
  check_f32_4d(w);
  check_f32_4d(dy);
  SDW_ASSERT(stride >= 1 && pad >= 0);
  const int N = (int)x->shape[0], Co = (int)w->shape[0];
  sdw_conv_geom g = {.C = (int)x->shape[1],
                     .H = (int)x->shape[2],
                     .W = (int)x->shape[3],
                     .KH = (int)w->shape[2],
                     .KW = (int)w->shape[3],
                     .stride = stride,
                     .pad = pad};
  sdw_conv_geom_finish(&g);
  SDW_ASSERT(w->shape[1] == g.C);
  SDW_ASSERT(g.Ho > 0 && g.Wo > 0);
  SDW_ASSERT(dy->shape[0] == N && dy->shape[1] == Co && dy->shape[2] == g.Ho &&
             dy->shape[3] == g.Wo);
  if (dx) {
    check_f32_4d(dx);
    SDW_ASSERT(sdw_tensor_same_shape(dx, x));
  }
  if (dw) {
    check_f32_4d(dw);
    SDW_ASSERT(sdw_tensor_same_shape(dw, w));
  }
  if (db) check_bias(db, Co);

  const int nt = num_threads_of(ctx);
  const int K = g.C * g.KH * g.KW;
  const int64_t P = (int64_t)g.Ho * g.Wo, in_plane = (int64_t)g.C * g.H * g.W;
  const float *xd = x->data, *wd = w->data, *dyd = dy->data;
  float *dxd = dx ? dx->data : NULL, *dwd = dw ? dw->data : NULL;

  if (db) bias_grad(dyd, N, Co, P, db->data, nt);
  if (!dx && !dw) return SDW_OK;

  const bool pointwise = is_pointwise(g.KH, g.KW, stride, pad);
  if (pointwise) {
    for (int n = 0; n < N; n++) {
      const float *xn = xd + n * in_plane, *dyn = dyd + (int64_t)n * Co * P;
      if (dwd)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, (int)P, 1.0f, dyn, (int)P, xn,
                    (int)P, 1.0f, dwd, K);
      if (dxd)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)P, Co, 1.0f, wd, K, dyn,
                    (int)P, 1.0f, dxd + n * in_plane, (int)P);
    }
    return SDW_OK;
  }

  const int rows = sdw_conv_band_rows(&g, K, (int64_t)Co * K);
  const size_t mark = sdw_arena_mark(ctx->scratch);
  float *col = sdw_arena_alloc(ctx->scratch, sizeof(float) * (size_t)K * rows * g.Wo);
  if (!col) return SDW_ERR_OUT_OF_MEMORY;
  for (int n = 0; n < N; n++) {
    const float *xn = xd + n * in_plane, *dyn = dyd + (int64_t)n * Co * P;
    for (int oh0 = 0; oh0 < g.Ho; oh0 += rows) {
      const int oh1 = oh0 + rows < g.Ho ? oh0 + rows : g.Ho;
      const int cols = (oh1 - oh0) * g.Wo;
      const float *dyb = dyn + (int64_t)oh0 * g.Wo;
      if (dwd) {
        sdw_im2col(&g, xn, oh0, oh1, col, nt);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, cols, 1.0f, dyb, (int)P, col,
                    cols, 1.0f, dwd, K);
      }
      if (dxd) {
        /* the column buffer is free again: reuse it for the column gradient */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, cols, Co, 1.0f, wd, K, dyb, (int)P,
                    0.0f, col, cols);
        sdw_col2im_add(&g, col, oh0, oh1, dxd + n * in_plane, nt);
      }
    }
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}

/* ------------------------------------------------------------------------- */

/* The conv2d whose adjoint a ConvTranspose2d is: input y[Co,Ho,Wo], output
 * x's H x W. Asserts the shapes agree with PyTorch's output-size formula. */
static sdw_conv_geom transpose_geom(const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *y,
                                    int stride, int pad) {
  check_f32_4d(x);
  check_f32_4d(w);
  check_f32_4d(y);
  SDW_ASSERT(stride >= 1 && pad >= 0);
  SDW_ASSERT(w->shape[0] == x->shape[1]);
  SDW_ASSERT(y->shape[0] == x->shape[0] && y->shape[1] == w->shape[1]);
  SDW_ASSERT(y->shape[2] == (x->shape[2] - 1) * stride - 2 * pad + w->shape[2]);
  SDW_ASSERT(y->shape[3] == (x->shape[3] - 1) * stride - 2 * pad + w->shape[3]);
  SDW_ASSERT(y->shape[2] > 0 && y->shape[3] > 0);
  sdw_conv_geom g = {.C = (int)y->shape[1],
                     .H = (int)y->shape[2],
                     .W = (int)y->shape[3],
                     .KH = (int)w->shape[2],
                     .KW = (int)w->shape[3],
                     .stride = stride,
                     .pad = pad};
  sdw_conv_geom_finish(&g);
  SDW_ASSERT(g.Ho == x->shape[2] && g.Wo == x->shape[3]);
  return g;
}

sdw_status sdw_cpu_conv_transpose2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                            const sdw_tensor *b, int stride, int pad,
                                            sdw_tensor *y) {
  const sdw_conv_geom g = transpose_geom(x, w, y, stride, pad);
  const int N = (int)x->shape[0], Ci = (int)x->shape[1], Co = g.C;
  if (b) check_bias(b, Co);
  const int nt = num_threads_of(ctx);
  const int Kt = Co * g.KH * g.KW; /* rows of the column matrix */
  const int64_t P = (int64_t)g.Ho * g.Wo, out_plane = (int64_t)g.H * g.W;
  const float *xd = x->data, *wd = w->data, *bd = b ? b->data : NULL;
  float *yd = y->data;
  const bool pointwise = is_pointwise(g.KH, g.KW, stride, pad);
  const int rows = pointwise ? g.Ho : sdw_conv_band_rows(&g, Kt, (int64_t)Ci * Kt);

  const size_t mark = sdw_arena_mark(ctx->scratch);
  float *col = NULL;
  if (!pointwise) {
    col = sdw_arena_alloc(ctx->scratch, sizeof(float) * (size_t)Kt * rows * g.Wo);
    if (!col) return SDW_ERR_OUT_OF_MEMORY;
  }
  for (int n = 0; n < N; n++) {
    const float *xn = xd + (int64_t)n * Ci * P;
    float *yn = yd + (int64_t)n * Co * out_plane;
    fill_rows(yn, Co, (int)out_plane, out_plane, bd, nt);
    if (pointwise) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Co, (int)P, Ci, 1.0f, wd, Co, xn, (int)P,
                  1.0f, yn, (int)P);
      continue;
    }
    for (int oh0 = 0; oh0 < g.Ho; oh0 += rows) {
      const int oh1 = oh0 + rows < g.Ho ? oh0 + rows : g.Ho;
      const int cols = (oh1 - oh0) * g.Wo;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Kt, cols, Ci, 1.0f, wd, Kt,
                  xn + (int64_t)oh0 * g.Wo, (int)P, 0.0f, col, cols);
      sdw_col2im_add(&g, col, oh0, oh1, yn, nt);
    }
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}

sdw_status sdw_cpu_conv_transpose2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                             const sdw_tensor *dy, int stride, int pad,
                                             sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db) {
  const sdw_conv_geom g = transpose_geom(x, w, dy, stride, pad);
  const int N = (int)x->shape[0], Ci = (int)x->shape[1], Co = g.C;
  if (dx) {
    check_f32_4d(dx);
    SDW_ASSERT(sdw_tensor_same_shape(dx, x));
  }
  if (dw) {
    check_f32_4d(dw);
    SDW_ASSERT(sdw_tensor_same_shape(dw, w));
  }
  if (db) check_bias(db, Co);
  const int nt = num_threads_of(ctx);
  const int Kt = Co * g.KH * g.KW;
  const int64_t P = (int64_t)g.Ho * g.Wo, out_plane = (int64_t)g.H * g.W;
  const float *xd = x->data, *wd = w->data, *dyd = dy->data;
  float *dxd = dx ? dx->data : NULL, *dwd = dw ? dw->data : NULL;

  if (db) bias_grad(dyd, N, Co, out_plane, db->data, nt);
  if (!dx && !dw) return SDW_OK;

  const bool pointwise = is_pointwise(g.KH, g.KW, stride, pad);
  const int rows = pointwise ? g.Ho : sdw_conv_band_rows(&g, Kt, (int64_t)Ci * Kt);
  const size_t mark = sdw_arena_mark(ctx->scratch);
  float *col = NULL;
  if (!pointwise) {
    col = sdw_arena_alloc(ctx->scratch, sizeof(float) * (size_t)Kt * rows * g.Wo);
    if (!col) return SDW_ERR_OUT_OF_MEMORY;
  }
  for (int n = 0; n < N; n++) {
    const float *xn = xd + (int64_t)n * Ci * P, *dyn = dyd + (int64_t)n * Co * out_plane;
    float *dxn = dxd ? dxd + (int64_t)n * Ci * P : NULL;
    for (int oh0 = 0; oh0 < g.Ho; oh0 += rows) {
      const int oh1 = oh0 + rows < g.Ho ? oh0 + rows : g.Ho;
      const int cols = (oh1 - oh0) * g.Wo;
      const float *cmat = dyn + (int64_t)oh0 * g.Wo;
      int64_t ldc = P;
      if (!pointwise) {
        sdw_im2col(&g, dyn, oh0, oh1, col, nt);
        cmat = col, ldc = cols;
      }
      if (dxn)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Ci, cols, Kt, 1.0f, wd, Kt, cmat,
                    (int)ldc, 1.0f, dxn + (int64_t)oh0 * g.Wo, (int)P);
      if (dwd)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Ci, Kt, cols, 1.0f,
                    xn + (int64_t)oh0 * g.Wo, (int)P, cmat, (int)ldc, 1.0f, dwd, Kt);
    }
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}
