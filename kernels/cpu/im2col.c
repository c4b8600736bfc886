/* im2col / col2im (see im2col.h). Rows of the column matrix are written (or
 * read) sequentially; each output row's valid span [lo, hi) is computed once
 * so the inner loops are plain copies (stride 1) or strided gathers. */
#include "kernels/cpu/im2col.h"

#include <string.h>

void sdw_conv_geom_finish(sdw_conv_geom *g) {
  g->Ho = (g->H + 2 * g->pad - g->KH) / g->stride + 1;
  g->Wo = (g->W + 2 * g->pad - g->KW) / g->stride + 1;
  if (g->H + 2 * g->pad < g->KH) g->Ho = 0;
  if (g->W + 2 * g->pad < g->KW) g->Wo = 0;
}

int sdw_conv_band_rows(const sdw_conv_geom *g, int64_t col_rows, int64_t weight_floats) {
  const int64_t min_bytes = (int64_t)16 << 20, max_bytes = (int64_t)64 << 20;
  int64_t target = 2 * weight_floats * (int64_t)sizeof(float);
  if (target < min_bytes) target = min_bytes;
  if (target > max_bytes) target = max_bytes;
  const int64_t per_row = col_rows * g->Wo * (int64_t)sizeof(float);
  int64_t rows = per_row > 0 ? target / per_row : g->Ho;
  if (rows < 1) rows = 1;
  if (rows > g->Ho) rows = g->Ho;
  const int64_t bands = (g->Ho + rows - 1) / rows;
  return (int)((g->Ho + bands - 1) / bands);
}

/* Output columns ow whose input column ow*stride - pad + kw lies in [0, W):
 * [*lo, *hi), possibly empty (lo == hi). */
static void valid_span(const sdw_conv_geom *g, int kw, int *lo, int *hi) {
  int first = g->pad - kw; /* need ow*stride >= first */
  int l = first <= 0 ? 0 : (first + g->stride - 1) / g->stride;
  int last = g->W - 1 + g->pad - kw; /* need ow*stride <= last */
  int h = last < 0 ? 0 : last / g->stride + 1;
  if (h > g->Wo) h = g->Wo;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

void sdw_im2col(const sdw_conv_geom *g, const float *img, int oh0, int oh1, float *col,
                int num_threads) {
  const int rows = g->C * g->KH * g->KW;
  const int64_t ncols = (int64_t)(oh1 - oh0) * g->Wo;
  const int64_t plane = (int64_t)g->H * g->W;
#pragma omp parallel for num_threads(num_threads)                                                  \
    schedule(static) if (rows * ncols >= SDW_CONV_PARALLEL_MIN)
  for (int r = 0; r < rows; r++) {
    const int kw = r % g->KW, kh = (r / g->KW) % g->KH, c = r / (g->KW * g->KH);
    int lo, hi;
    valid_span(g, kw, &lo, &hi);
    const float *src_plane = img + c * plane;
    float *dst = col + r * ncols;
    for (int oh = oh0; oh < oh1; oh++, dst += g->Wo) {
      const int ih = oh * g->stride - g->pad + kh;
      if (ih < 0 || ih >= g->H || lo == hi) {
        memset(dst, 0, sizeof(float) * (size_t)g->Wo);
        continue;
      }
      /* input pixel of output column lo (in range by valid_span) */
      const float *src = src_plane + (int64_t)ih * g->W + (lo * g->stride - g->pad + kw);
      if (lo > 0) memset(dst, 0, sizeof(float) * (size_t)lo);
      if (g->stride == 1) {
        memcpy(dst + lo, src, sizeof(float) * (size_t)(hi - lo));
      } else {
        const int s = g->stride;
        for (int j = 0; j < hi - lo; j++)
          dst[lo + j] = src[(int64_t)j * s];
      }
      if (hi < g->Wo) memset(dst + hi, 0, sizeof(float) * (size_t)(g->Wo - hi));
    }
  }
}

void sdw_col2im_add(const sdw_conv_geom *g, const float *col, int oh0, int oh1, float *img,
                    int num_threads) {
  const int64_t ncols = (int64_t)(oh1 - oh0) * g->Wo;
  const int64_t plane = (int64_t)g->H * g->W;
#pragma omp parallel for num_threads(num_threads)                                                  \
    schedule(static) if (g->C * g->KH * g->KW * ncols >= SDW_CONV_PARALLEL_MIN)
  for (int c = 0; c < g->C; c++) {
    float *dst_plane = img + c * plane;
    for (int kh = 0; kh < g->KH; kh++) {
      for (int kw = 0; kw < g->KW; kw++) {
        const int64_t r = ((int64_t)c * g->KH + kh) * g->KW + kw;
        int lo, hi;
        valid_span(g, kw, &lo, &hi);
        const float *src = col + r * ncols;
        for (int oh = oh0; oh < oh1; oh++, src += g->Wo) {
          const int ih = oh * g->stride - g->pad + kh;
          if (ih < 0 || ih >= g->H) continue;
          if (lo == hi) continue;
          float *restrict dst = dst_plane + (int64_t)ih * g->W + (lo * g->stride - g->pad + kw);
          const float *restrict s_row = src + lo;
          const int n = hi - lo;
          if (g->stride == 1) {
            for (int j = 0; j < n; j++)
              dst[j] += s_row[j];
          } else {
            const int s = g->stride;
            for (int j = 0; j < n; j++)
              dst[(int64_t)j * s] += s_row[j];
          }
        }
      }
    }
  }
}
