/* Resampling of 8-bit RGB images as OpenCV's cv2.resize computes it, and
 * img2dataset's resize modes on top (see pipeline/image.h).
 *
 * OpenCV's 8-bit arithmetic is reproduced rather than approximated:
 *  - INTER_CUBIC / INTER_LANCZOS4 / linear: per-axis coefficients computed in
 *    float, rounded to shorts scaled by 2048; the horizontal pass sums
 *    pixel * coefficient in int, the vertical pass sums row * coefficient in
 *    int and rounds with (v + 2^21) >> 22, saturating to 0..255.
 *  - INTER_AREA with integer factors: box sums; 2x2 rounds (s + 2) >> 2,
 *    other factors round s * (1/area) in float to nearest even.
 *  - INTER_AREA otherwise: OpenCV's decimation tables (float weights of the
 *    overlapped source cells), horizontal then vertical accumulation in
 *    float, rounded to nearest even.
 * OpenCV runs some of these loops through SIMD kernels that compute in float
 * (e.g. its vertical cubic pass), which can move a value that lies within
 * rounding error of .5 by one; the tests measure the remaining difference. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/image.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Products and sums stay separate roundings, as OpenCV computes them: GCC
 * does not fuse them in ISO C mode (-std=c11), clang would by default. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

enum { COEF_BITS = 11, COEF_SCALE = 1 << COEF_BITS, CN = 3 };

sdw_status sdw_image_alloc(int width, int height, sdw_image *out) {
  out->pixels = NULL;
  out->width = out->height = 0;
  if (width < 1 || height < 1 || (int64_t)width * height > ((int64_t)1 << 40))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "image size %dx%d is not allocatable", width, height);
  uint8_t *p = malloc((size_t)width * (size_t)height * CN);
  if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for a %dx%d image", width, height);
  out->pixels = p;
  out->width = width;
  out->height = height;
  return SDW_OK;
}

void sdw_image_free(sdw_image *image) {
  if (!image) return;
  free(image->pixels);
  image->pixels = NULL;
  image->width = image->height = 0;
}

static sdw_status image_copy(const sdw_image *in, sdw_image *out) {
  SDW_TRY(sdw_image_alloc(in->width, in->height, out));
  memcpy(out->pixels, in->pixels, (size_t)in->width * in->height * CN);
  return SDW_OK;
}

static int check_image(const sdw_image *in) {
  return in && in->pixels && in->width > 0 && in->height > 0;
}

static inline uint8_t sat_u8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* cvRound of a float: nearest, ties to even (the default rounding mode). */
static inline int round_even_f(float v) { return (int)lrintf(v); }

/* ------------------------------------------------------------------------- */
/* interpolation coefficients (OpenCV's interpolateCubic / interpolateLanczos4) */

static void coeffs_cubic(float x, float *c) {
  const float A = -0.75f;
  c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
  c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
  c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
  c[3] = 1.f - c[0] - c[1] - c[2];
}

static void coeffs_lanczos4(float x, float *c) {
  static const double s45 = 0.70710678118654752440084436210485;
  static const double cs[][2] = {{1, 0},  {-s45, -s45}, {0, 1},  {s45, -s45},
                                 {-1, 0}, {s45, s45},   {0, -1}, {-s45, s45}};
  const double pi = 3.1415926535897932384626433832795;
  float sum = 0;
  double y0 = -(x + 3) * pi * 0.25, s0 = sin(y0), c0 = cos(y0);
  for (int i = 0; i < 8; i++) {
    float d = (x + 3 - i);
    if (fabsf(d) >= 1e-6f) {
      double y = -d * pi * 0.25;
      c[i] = (float)((cs[i][0] * s0 + cs[i][1] * c0) / (y * y));
    } else {
      c[i] = 1e30f; /* x ~ 0 or 1: normalises to a single tap */
    }
    sum += c[i];
  }
  sum = 1.f / sum;
  for (int i = 0; i < 8; i++)
    c[i] *= sum;
}

typedef enum { METHOD_LINEAR_AREA, METHOD_CUBIC, METHOD_LANCZOS4 } generic_method;

/* Per output position along one axis: the base source index and ksize
 * fixed-point coefficients, as OpenCV's resize() builds xofs/ialpha. */
static void axis_table(int ssize, int dsize, double scale, double inv_scale, generic_method m,
                       int ksize, int *ofs, int16_t *coef, int is_x) {
  int ksize2 = ksize / 2;
  float cbuf[8];
  for (int d = 0; d < dsize; d++) {
    int s;
    float f;
    if (m != METHOD_LINEAR_AREA) {
      f = (float)((d + 0.5) * scale - 0.5);
      s = (int)floorf(f);
      f -= (float)s;
    } else {
      s = (int)floor(d * scale);
      f = (float)((d + 1) - (s + 1) * inv_scale);
      f = f <= 0 ? 0.f : f - (float)floor(f);
    }
    /* OpenCV pins linear taps at the borders on the x axis only */
    if (is_x && m == METHOD_LINEAR_AREA) {
      if (s < ksize2 - 1 && s < 0) f = 0, s = 0;
      if (s + ksize2 >= ssize && s >= ssize - 1) f = 0, s = ssize - 1;
    }
    ofs[d] = s;
    if (m == METHOD_CUBIC)
      coeffs_cubic(f, cbuf);
    else if (m == METHOD_LANCZOS4)
      coeffs_lanczos4(f, cbuf);
    else
      cbuf[0] = 1.f - f, cbuf[1] = f;
    for (int k = 0; k < ksize; k++) {
      int v = round_even_f(cbuf[k] * COEF_SCALE);
      coef[d * ksize + k] = (int16_t)(v < -32768 ? -32768 : v > 32767 ? 32767 : v);
    }
  }
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Horizontal pass of one source row into int sums (width dw * 3). */
static void hpass(const uint8_t *src, int sw, int dw, int ksize, const int *xofs,
                  const int16_t *xcoef, int32_t *dst) {
  int ksize2 = ksize / 2;
  for (int dx = 0; dx < dw; dx++) {
    int s0 = xofs[dx] - ksize2 + 1;
    const int16_t *a = xcoef + dx * ksize;
    int32_t acc0 = 0, acc1 = 0, acc2 = 0;
    if (s0 >= 0 && s0 + ksize <= sw) {
      const uint8_t *p = src + (size_t)s0 * CN;
      for (int k = 0; k < ksize; k++, p += CN) {
        acc0 += p[0] * a[k];
        acc1 += p[1] * a[k];
        acc2 += p[2] * a[k];
      }
    } else {
      for (int k = 0; k < ksize; k++) {
        const uint8_t *p = src + (size_t)clampi(s0 + k, 0, sw - 1) * CN;
        acc0 += p[0] * a[k];
        acc1 += p[1] * a[k];
        acc2 += p[2] * a[k];
      }
    }
    dst[dx * CN + 0] = acc0;
    dst[dx * CN + 1] = acc1;
    dst[dx * CN + 2] = acc2;
  }
}

/* cv2.resize's generic separable path for 8-bit images. The int sums cannot
 * overflow: |h| <= 255 * 2048 * sum|c| (< 1.4 for Lanczos4), and the
 * vertical sum stays below 2^31 by the same bound. */
static sdw_status resize_generic(const sdw_image *in, int dw, int dh, generic_method m,
                                 sdw_image *out) {
  int sw = in->width, sh = in->height;
  int ksize = m == METHOD_CUBIC ? 4 : m == METHOD_LANCZOS4 ? 8 : 2;
  int ksize2 = ksize / 2;
  double inv_sx = (double)dw / sw, inv_sy = (double)dh / sh;
  double sx = 1. / inv_sx, sy = 1. / inv_sy;

  size_t row_len = (size_t)dw * CN;
  int *xofs = malloc(sizeof(int) * (size_t)dw);
  int *yofs = malloc(sizeof(int) * (size_t)dh);
  int16_t *xcoef = malloc(sizeof(int16_t) * (size_t)dw * ksize);
  int16_t *ycoef = malloc(sizeof(int16_t) * (size_t)dh * ksize);
  int32_t *rows = malloc(sizeof(int32_t) * row_len * (ksize + 1));
  int32_t *acc = rows ? rows + row_len * ksize : NULL;
  int row_id[8];
  sdw_status st = SDW_OK;
  if (!xofs || !yofs || !xcoef || !ycoef || !rows) {
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory resizing %dx%d to %dx%d", sw, sh, dw, dh);
    goto done;
  }
  st = sdw_image_alloc(dw, dh, out);
  if (st != SDW_OK) goto done;
  axis_table(sw, dw, sx, inv_sx, m, ksize, xofs, xcoef, 1);
  axis_table(sh, dh, sy, inv_sy, m, ksize, yofs, ycoef, 0);
  for (int k = 0; k < ksize; k++)
    row_id[k] = -1;

  for (int dy = 0; dy < dh; dy++) {
    const int32_t *r[8];
    for (int k = 0; k < ksize; k++) {
      int y = clampi(yofs[dy] - ksize2 + 1 + k, 0, sh - 1);
      /* source rows advance monotonically: a small cache keyed by row */
      int slot = -1;
      for (int j = 0; j < ksize; j++)
        if (row_id[j] == y) slot = j;
      if (slot < 0) {
        /* evict a slot not used by this output row (the lowest row id) */
        int best = 0;
        for (int j = 1; j < ksize; j++)
          if (row_id[j] < row_id[best]) best = j;
        slot = best;
        hpass(in->pixels + (size_t)y * sw * CN, sw, dw, ksize, xofs, xcoef,
              rows + (size_t)slot * row_len);
        row_id[slot] = y;
      }
      r[k] = rows + (size_t)slot * row_len;
    }
    const int16_t *b = ycoef + (size_t)dy * ksize;
    uint8_t *d = out->pixels + (size_t)dy * row_len;
    /* tap-major so the compiler vectorises along x; int sums are exact in
     * any order */
    const int32_t *r0 = r[0];
    int32_t b0 = b[0];
    for (size_t x = 0; x < row_len; x++)
      acc[x] = r0[x] * b0;
    for (int k = 1; k < ksize; k++) {
      const int32_t *rk = r[k];
      int32_t bk = b[k];
      for (size_t x = 0; x < row_len; x++)
        acc[x] += rk[x] * bk;
    }
    for (size_t x = 0; x < row_len; x++)
      d[x] = sat_u8((acc[x] + (1 << (2 * COEF_BITS - 1))) >> (2 * COEF_BITS));
  }
done:
  free(xofs);
  free(yofs);
  free(xcoef);
  free(ycoef);
  free(rows);
  return st;
}

/* ------------------------------------------------------------------------- */
/* INTER_AREA, shrinking */

typedef struct decimate {
  int si, di;
  float alpha;
} decimate;

/* OpenCV's computeResizeAreaTab (indices in pixels, not channels). */
static int area_table(int ssize, int dsize, double scale, decimate *tab) {
  int k = 0;
  for (int dx = 0; dx < dsize; dx++) {
    double fsx1 = dx * scale;
    double fsx2 = fsx1 + scale;
    double cell = scale < ssize - fsx1 ? scale : ssize - fsx1;
    int sx1 = (int)ceil(fsx1), sx2 = (int)floor(fsx2);
    sx2 = sx2 < ssize - 1 ? sx2 : ssize - 1;
    sx1 = sx1 < sx2 ? sx1 : sx2;
    if (sx1 - fsx1 > 1e-3) {
      tab[k].di = dx;
      tab[k].si = sx1 - 1;
      tab[k++].alpha = (float)((sx1 - fsx1) / cell);
    }
    for (int s = sx1; s < sx2; s++) {
      tab[k].di = dx;
      tab[k].si = s;
      tab[k++].alpha = (float)(1.0 / cell);
    }
    if (fsx2 - sx2 > 1e-3) {
      double w = fsx2 - sx2;
      w = w < 1. ? w : 1.;
      w = w < cell ? w : cell;
      tab[k].di = dx;
      tab[k].si = sx2;
      tab[k++].alpha = (float)(w / cell);
    }
  }
  return k;
}

/* Float RGBX pixels: one output pixel's three channels in one short vector,
 * the fourth lane unused (zero). Every lane does exactly the scalar float
 * arithmetic below (products then sums, no fused multiply-add: ISO C mode
 * leaves -ffp-contract off), so the results are OpenCV's bit for bit. */
typedef float v4f __attribute__((vector_size(16)));

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define AREA_AVX512 1
#endif

/* One source row, u8 RGB -> float RGBX. */
static void row_to_rgbx(const uint8_t *s, int w, v4f *out) {
  int x = 0;
#ifdef AREA_AVX512
  /* 4 pixels (12 bytes, read as 16: stop 2 pixels early) per step */
  const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
  for (; x + 6 <= w; x += 4) {
    __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(s + (size_t)x * CN)), spread);
    _mm512_storeu_ps((float *)(out + x), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)));
  }
#endif
  for (s += (size_t)x * CN; x < w; x++, s += CN)
    out[x] = (v4f){(float)s[0], (float)s[1], (float)s[2], 0.f};
}

/* Sum of K contiguous weighted source pixels per output pixel. OpenCV adds
 * the decimation-table entries of one output pixel into a zeroed buffer in
 * table order (left partial cell, whole cells, right partial cell: always
 * increasing, contiguous source indices); here each output pixel starts at
 * xstart[dx] and its weights (xw, tap-major: xw[t * dw + dx], the weight in
 * all four lanes) are padded with zeros to K taps. Adding 0 * p (= +0) to a
 * non-negative sum leaves it unchanged, so the padding is exact. */
static inline __attribute__((always_inline)) void
area_hpass_k(const v4f *src, int dw, int K, const int *xstart, const v4f *xw, v4f *dst) {
  int dx = 0;
#ifdef AREA_AVX512
  /* four output pixels per 512-bit vector, the same lane arithmetic */
  for (; dx + 4 <= dw; dx += 4) {
    const float *p0 = (const float *)(src + xstart[dx]),
                *p1 = (const float *)(src + xstart[dx + 1]);
    const float *p2 = (const float *)(src + xstart[dx + 2]),
                *p3 = (const float *)(src + xstart[dx + 3]);
    __m512 acc = _mm512_setzero_ps();
    for (int t = 0; t < K; t++) {
      __m512 v = _mm512_castps128_ps512(_mm_load_ps(p0 + 4 * t));
      v = _mm512_insertf32x4(v, _mm_load_ps(p1 + 4 * t), 1);
      v = _mm512_insertf32x4(v, _mm_load_ps(p2 + 4 * t), 2);
      v = _mm512_insertf32x4(v, _mm_load_ps(p3 + 4 * t), 3);
      __m512 prod = _mm512_mul_ps(v, _mm512_loadu_ps((const float *)(xw + (size_t)t * dw + dx)));
      acc = t ? _mm512_add_ps(acc, prod) : prod;
    }
    _mm512_storeu_ps((float *)(dst + dx), acc);
  }
#endif
  for (; dx < dw; dx++) {
    const v4f *p = src + xstart[dx];
    v4f acc = p[0] * xw[dx];
    for (int t = 1; t < K; t++)
      acc += p[t] * xw[(size_t)t * dw + dx];
    dst[dx] = acc;
  }
}

/* The common tap counts with K a constant, so the tap loop unrolls. */
static void area_hpass(const v4f *src, int dw, int K, const int *xstart, const v4f *xw, v4f *dst) {
  switch (K) {
  case 2: area_hpass_k(src, dw, 2, xstart, xw, dst); break;
  case 3: area_hpass_k(src, dw, 3, xstart, xw, dst); break;
  case 4: area_hpass_k(src, dw, 4, xstart, xw, dst); break;
  default: area_hpass_k(src, dw, K, xstart, xw, dst); break;
  }
}

/* Round to nearest even and saturate a row of float RGBX sums to u8 RGB. */
static void store_rgbx(const float *sum, int dw, uint8_t *d) {
  int x = 0;
#ifdef AREA_AVX512
  /* cvtps rounds with the current mode (nearest even), as lrintf */
  const __m128i pack = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  for (; x + 4 <= dw; x += 4) {
    __m512i v =
        _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_loadu_ps(sum + 4 * x)), _mm512_setzero_si512());
    __m128i b = _mm_shuffle_epi8(_mm512_cvtusepi32_epi8(v), pack);
    _mm_mask_storeu_epi8(d + (size_t)x * CN, 0x0fff, b);
  }
#endif
  for (d += (size_t)x * CN, sum += 4 * x; x < dw; x++, d += CN, sum += 4) {
    d[0] = sat_u8(round_even_f(sum[0]));
    d[1] = sat_u8(round_even_f(sum[1]));
    d[2] = sat_u8(round_even_f(sum[2]));
  }
}

/* INTER_AREA shrinking by a fractional factor, one source row at a time
 * (rows in increasing order; rows no output needs are skipped), computing
 * only the output window [x0, x0 + cw) x [y0, y0 + ch) of the dw x dh
 * result: a center crop never computes the pixels it would throw away. The
 * pixels inside the window are exactly those of the full resize. */
typedef struct area_stream {
  int sw, cw, K, y0;
  int sx0, sx1;    /* the source columns the window reads: [sx0, sx1) */
  int *xstart;     /* [cw] first source pixel of each output pixel */
  v4f *xw;         /* [K * cw] tap-major weights */
  decimate *ytab;  /* the vertical table, entries of the window's rows only */
  int ny, j;       /* entries; the next one */
  int prev_dy;     /* output row being accumulated */
  v4f *src, *hrow; /* RGBX rows: the source row (+ K zero pixels), its horizontal sums */
  float *sum;      /* [cw * 4] vertical accumulator */
  sdw_image *out;  /* cw x ch */
} area_stream;

static void area_stream_free(area_stream *a) {
  free(a->xstart);
  free(a->xw);
  free(a->ytab);
  free(a->src);
  a->xstart = NULL, a->xw = NULL, a->ytab = NULL, a->src = NULL;
}

static sdw_status area_stream_init(area_stream *a, int sw, int sh, int dw, int dh, int x0, int y0,
                                   int cw, int ch, sdw_image *out) {
  memset(a, 0, sizeof *a);
  double scale_x = (double)sw / dw, scale_y = (double)sh / dh;
  decimate *xtab = malloc(sizeof(decimate) * ((size_t)sw * 2 + 2));
  a->ytab = malloc(sizeof(decimate) * ((size_t)sh * 2 + 2));
  a->xstart = calloc((size_t)cw, sizeof(int));
  if (!xtab || !a->ytab || !a->xstart) goto oom;
  int nx = area_table(sw, dw, scale_x, xtab);
  int ny = area_table(sh, dh, scale_y, a->ytab);
  /* taps per output pixel: the widest run of table entries */
  int K = 1;
  for (int k = 0, run = 0; k < nx; k++) {
    run = k > 0 && xtab[k].di == xtab[k - 1].di ? run + 1 : 1;
    if (run > K) K = run;
  }
  size_t nw = ((size_t)cw * K + 3) & ~(size_t)3;
  a->xw = aligned_alloc(64, sizeof(v4f) * nw);
  size_t nbuf = ((size_t)sw + K + (size_t)cw * 2 + 15) & ~(size_t)15;
  a->src = aligned_alloc(64, sizeof(v4f) * nbuf);
  if (!a->xw || !a->src) goto oom;
  memset(a->xw, 0, sizeof(v4f) * nw);
  for (int k = 0, t = 0; k < nx; k++) {
    int di = xtab[k].di;
    t = k > 0 && di == xtab[k - 1].di ? t + 1 : 0;
    if (di < x0 || di >= x0 + cw) continue;
    if (t == 0) a->xstart[di - x0] = xtab[k].si;
    float w = xtab[k].alpha;
    a->xw[(size_t)t * cw + (di - x0)] = (v4f){w, w, w, w};
  }
  free(xtab);
  xtab = NULL;
  a->sx0 = a->xstart[0];
  a->sx1 = a->xstart[cw - 1] + K;
  if (a->sx1 > sw) a->sx1 = sw;
  /* keep the window's rows of the vertical table (still in source order) */
  int m = 0;
  for (int k = 0; k < ny; k++)
    if (a->ytab[k].di >= y0 && a->ytab[k].di < y0 + ch) a->ytab[m++] = a->ytab[k];
  a->ny = m;
  a->sw = sw, a->cw = cw, a->K = K, a->y0 = y0;
  a->hrow = a->src + sw + K;
  a->sum = (float *)(a->hrow + cw);
  /* padding taps read past the row end with zero weight: make them zeros
   * (0 * NaN would not be 0); the whole row, so nothing read is undefined */
  memset(a->src, 0, sizeof(v4f) * ((size_t)sw + K));
  memset(a->sum, 0, sizeof(float) * 4 * (size_t)cw);
  a->prev_dy = m > 0 ? a->ytab[0].di : y0;
  a->out = out;
  sdw_status st = sdw_image_alloc(cw, ch, out);
  if (st != SDW_OK) area_stream_free(a);
  return st;
oom:
  free(xtab);
  area_stream_free(a);
  return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory resizing %dx%d to %dx%d", sw, sh, dw, dh);
}

/* Does the window need source row y? (Rows are pushed in order.) */
static inline bool area_stream_wants(const area_stream *a, int y) {
  return a->j < a->ny && a->ytab[a->j].si == y;
}

/* Source row y (u8 RGB, sw pixels). OpenCV's vertical loop: the entries of
 * one source row in table order; a new output row first stores the finished
 * one (rounded), then starts from beta * row. */
static void area_stream_row(area_stream *a, int y, const uint8_t *row) {
  while (a->j < a->ny && a->ytab[a->j].si < y)
    a->j++; /* not pushed: cannot happen with rows in order */
  if (!area_stream_wants(a, y)) return;
  /* only the columns the window reads (a center crop leaves the rest) */
  row_to_rgbx(row + (size_t)a->sx0 * CN, a->sx1 - a->sx0, a->src + a->sx0);
  area_hpass(a->src, a->cw, a->K, a->xstart, a->xw, a->hrow);
  const float *h = (const float *)a->hrow;
  float *sum = a->sum;
  size_t row_len = (size_t)a->cw * 4;
  for (; a->j < a->ny && a->ytab[a->j].si == y; a->j++) {
    float beta = a->ytab[a->j].alpha;
    int dy = a->ytab[a->j].di;
    if (dy != a->prev_dy) {
      store_rgbx(sum, a->cw, a->out->pixels + (size_t)(a->prev_dy - a->y0) * a->cw * CN);
      for (size_t x = 0; x < row_len; x++)
        sum[x] = beta * h[x];
      a->prev_dy = dy;
    } else {
      for (size_t x = 0; x < row_len; x++)
        sum[x] += beta * h[x];
    }
  }
}

/* Stores the last row; the stream's buffers are freed, out is the result. */
static void area_stream_finish(area_stream *a) {
  store_rgbx(a->sum, a->cw, a->out->pixels + (size_t)(a->prev_dy - a->y0) * a->cw * CN);
  area_stream_free(a);
}

static sdw_status resize_area_fractional(const sdw_image *in, int dw, int dh, int x0, int y0,
                                         int cw, int ch, sdw_image *out) {
  area_stream a;
  SDW_TRY(area_stream_init(&a, in->width, in->height, dw, dh, x0, y0, cw, ch, out));
  for (int y = 0; y < in->height; y++)
    if (area_stream_wants(&a, y)) area_stream_row(&a, y, in->pixels + (size_t)y * in->width * CN);
  area_stream_finish(&a);
  return SDW_OK;
}

static sdw_status resize_area_integer(const sdw_image *in, int dw, int dh, int fx, int fy,
                                      sdw_image *out) {
  SDW_TRY(sdw_image_alloc(dw, dh, out));
  int sw = in->width;
  size_t sstride = (size_t)sw * CN;
  int area = fx * fy;
  float scale = 1.f / (float)area;
  for (int dy = 0; dy < dh; dy++) {
    const uint8_t *S = in->pixels + (size_t)dy * fy * sstride;
    uint8_t *D = out->pixels + (size_t)dy * dw * CN;
    if (fx == 2 && fy == 2) {
      const uint8_t *S1 = S + sstride;
      for (int dx = 0; dx < dw; dx++) {
        const uint8_t *a = S + (size_t)dx * 2 * CN, *b = S1 + (size_t)dx * 2 * CN;
        for (int c = 0; c < CN; c++)
          D[dx * CN + c] = (uint8_t)((a[c] + a[c + CN] + b[c] + b[c + CN] + 2) >> 2);
      }
      continue;
    }
    for (int dx = 0; dx < dw; dx++)
      for (int c = 0; c < CN; c++) {
        int s = 0;
        for (int y = 0; y < fy; y++) {
          const uint8_t *p = S + y * sstride + (size_t)dx * fx * CN + c;
          for (int x = 0; x < fx; x++)
            s += p[x * CN];
        }
        D[dx * CN + c] = sat_u8(round_even_f((float)s * scale));
      }
  }
  return SDW_OK;
}

static sdw_status check_target(const sdw_image *in, int width, int height) {
  if (!check_image(in)) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: empty input image");
  if (width < 1 || height < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: target %dx%d is empty", width, height);
  return SDW_OK;
}

typedef enum { AREA_COPY, AREA_INTEGER, AREA_FRACTIONAL, AREA_ENLARGE } area_kind;

/* Which of OpenCV's INTER_AREA paths resizes sw x sh to dw x dh (integer
 * factors: *fx, *fy). */
static area_kind area_kind_of(int sw, int sh, int dw, int dh, int *fx, int *fy) {
  if (dw == sw && dh == sh) return AREA_COPY;
  double inv_sx = (double)dw / sw, inv_sy = (double)dh / sh;
  double sx = 1. / inv_sx, sy = 1. / inv_sy;
  if (sx >= 1 && sy >= 1) {
    int ix = (int)lrint(sx), iy = (int)lrint(sy);
    *fx = ix, *fy = iy;
    if (fabs(sx - ix) < 2.220446049250313e-16 && fabs(sy - iy) < 2.220446049250313e-16)
      return AREA_INTEGER;
    return AREA_FRACTIONAL;
  }
  return AREA_ENLARGE;
}

sdw_status sdw_image_resize_area(const sdw_image *in, int width, int height, sdw_image *out) {
  SDW_TRY(check_target(in, width, height));
  int fx = 1, fy = 1;
  switch (area_kind_of(in->width, in->height, width, height, &fx, &fy)) {
  case AREA_COPY: return image_copy(in, out);
  case AREA_INTEGER: return resize_area_integer(in, width, height, fx, fy, out);
  case AREA_FRACTIONAL: return resize_area_fractional(in, width, height, 0, 0, width, height, out);
  default: return resize_generic(in, width, height, METHOD_LINEAR_AREA, out);
  }
}

sdw_status sdw_image_resize_cubic(const sdw_image *in, int width, int height, sdw_image *out) {
  SDW_TRY(check_target(in, width, height));
  if (width == in->width && height == in->height) return image_copy(in, out);
  return resize_generic(in, width, height, METHOD_CUBIC, out);
}

sdw_status sdw_image_resize_lanczos(const sdw_image *in, int width, int height, sdw_image *out) {
  SDW_TRY(check_target(in, width, height));
  if (width == in->width && height == in->height) return image_copy(in, out);
  return resize_generic(in, width, height, METHOD_LANCZOS4, out);
}

sdw_status sdw_image_center_crop(const sdw_image *in, int width, int height, sdw_image *out) {
  SDW_TRY(check_target(in, width, height));
  if (width > in->width || height > in->height)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "center crop %dx%d does not fit in %dx%d", width,
                    height, in->width, in->height);
  SDW_TRY(sdw_image_alloc(width, height, out));
  int x0 = (in->width - width) / 2, y0 = (in->height - height) / 2;
  for (int y = 0; y < height; y++)
    memcpy(out->pixels + (size_t)y * width * CN,
           in->pixels + ((size_t)(y + y0) * in->width + x0) * CN, (size_t)width * CN);
  return SDW_OK;
}

/* White padding to size x size, the image placed as PadIfNeeded centres it. */
static sdw_status pad_white(const sdw_image *in, int size, sdw_image *out) {
  int w = in->width > size ? in->width : size, h = in->height > size ? in->height : size;
  SDW_TRY(sdw_image_alloc(w, h, out));
  memset(out->pixels, 255, (size_t)w * h * CN);
  int x0 = (w - in->width) / 2, y0 = (h - in->height) / 2;
  for (int y = 0; y < in->height; y++)
    memcpy(out->pixels + ((size_t)(y + y0) * w + x0) * CN, in->pixels + (size_t)y * in->width * CN,
           (size_t)in->width * CN);
  return SDW_OK;
}

/* What sdw_image_resize does to a w x h image. */
typedef struct resize_plan {
  bool copy;   /* out is a copy of in */
  bool stream; /* area shrinking by a fractional factor: window x0, y0, cw, ch of nw x nh */
  bool downscale;
  int nw, nh; /* the scaled size */
  int x0, y0, cw, ch;
} resize_plan;

static sdw_status plan_resize(int w, int h, const sdw_resize_options *o, resize_plan *p) {
  memset(p, 0, sizeof *p);
  if (o->mode == SDW_RESIZE_NO) {
    p->copy = true;
    return SDW_OK;
  }
  if (o->size < 1) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: size %d < 1", o->size);
  int by_smaller = o->mode == SDW_RESIZE_KEEP_RATIO || o->mode == SDW_RESIZE_CENTER_CROP;
  int ref = by_smaller ? (w < h ? w : h) : (w > h ? w : h);
  p->downscale = ref > o->size;
  if (o->resize_only_if_bigger && !p->downscale) {
    p->copy = true;
    return SDW_OK;
  }
  /* albumentations: scale = size / side; new = max(1, round(side * scale)) */
  double scale = (double)o->size / ref;
  double nwf = nearbyint(w * scale), nhf = nearbyint(h * scale);
  p->nw = nwf < 1 ? 1 : nwf > 1e9 ? 1000000000 : (int)nwf;
  p->nh = nhf < 1 ? 1 : nhf > 1e9 ? 1000000000 : (int)nhf;
  int fx, fy;
  if (p->downscale && o->mode != SDW_RESIZE_BORDER &&
      area_kind_of(w, h, p->nw, p->nh, &fx, &fy) == AREA_FRACTIONAL) {
    /* a center crop computes its window only: the pixels it keeps are the same */
    p->x0 = p->y0 = 0, p->cw = p->nw, p->ch = p->nh;
    if (o->mode == SDW_RESIZE_CENTER_CROP) {
      p->x0 = (p->nw - o->size) / 2, p->y0 = (p->nh - o->size) / 2;
      p->cw = p->ch = o->size;
    }
    p->stream = p->x0 >= 0 && p->y0 >= 0;
  }
  return SDW_OK;
}

sdw_status sdw_image_resize(const sdw_image *in, const sdw_resize_options *o, sdw_image *out) {
  out->pixels = NULL;
  out->width = out->height = 0;
  if (!check_image(in)) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: empty input image");
  resize_plan p;
  SDW_TRY(plan_resize(in->width, in->height, o, &p));
  if (p.copy) return image_copy(in, out);
  if (p.stream) return resize_area_fractional(in, p.nw, p.nh, p.x0, p.y0, p.cw, p.ch, out);
  int w = in->width, h = in->height, nw = p.nw, nh = p.nh;
  sdw_image scaled;
  if (nw == w && nh == h)
    SDW_TRY(image_copy(in, &scaled));
  else if (p.downscale)
    SDW_TRY(sdw_image_resize_area(in, nw, nh, &scaled));
  else if (o->upscale_cubic)
    SDW_TRY(sdw_image_resize_cubic(in, nw, nh, &scaled));
  else
    SDW_TRY(sdw_image_resize_lanczos(in, nw, nh, &scaled));

  sdw_status st = SDW_OK;
  if (o->mode == SDW_RESIZE_CENTER_CROP) {
    st = sdw_image_center_crop(&scaled, o->size, o->size, out);
    sdw_image_free(&scaled);
  } else if (o->mode == SDW_RESIZE_BORDER) {
    st = pad_white(&scaled, o->size, out);
    sdw_image_free(&scaled);
  } else {
    *out = scaled;
  }
  return st;
}

/* ------------------------------------------------------------------------- */
/* resizing rows as a decoder produces them */

struct sdw_image_resizer {
  sdw_resize_options o;
  resize_plan p;
  sdw_image full; /* !p.stream: the whole input (p.copy: it is the output) */
  area_stream a;  /* p.stream */
  uint8_t *rows;  /* p.stream: a ring of SDW_IMAGE_RESIZER_BATCH rows being decoded */
  int width, height;
};

sdw_status sdw_image_resizer_new(int width, int height, const sdw_resize_options *options,
                                 sdw_image_resizer **out) {
  *out = NULL;
  if (width < 1 || height < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: empty input image");
  sdw_image_resizer *r = calloc(1, sizeof *r);
  if (!r) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for a resizer");
  r->o = *options;
  r->width = width, r->height = height;
  sdw_status st = plan_resize(width, height, options, &r->p);
  if (st == SDW_OK && r->p.stream) {
    r->rows = malloc((size_t)width * CN * SDW_IMAGE_RESIZER_BATCH);
    if (!r->rows)
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for a %dx%d resize", width, height);
    else
      st = area_stream_init(&r->a, width, height, r->p.nw, r->p.nh, r->p.x0, r->p.y0, r->p.cw,
                            r->p.ch, &r->full);
  } else if (st == SDW_OK) {
    st = sdw_image_alloc(width, height, &r->full);
  }
  if (st != SDW_OK) {
    sdw_image_resizer_free(r);
    return st;
  }
  *out = r;
  return SDW_OK;
}

uint8_t *sdw_image_resizer_row(sdw_image_resizer *r, int y) {
  if (r->p.stream) return r->rows + (size_t)(y % SDW_IMAGE_RESIZER_BATCH) * r->width * CN;
  return r->full.pixels + (size_t)y * r->width * CN;
}

void sdw_image_resizer_region(const sdw_image_resizer *r, int *x0, int *x1, int *y0, int *y1) {
  *x0 = 0, *x1 = r->width, *y0 = 0, *y1 = r->height;
  if (r->p.stream && r->a.ny > 0) {
    *x0 = r->a.sx0, *x1 = r->a.sx1;
    *y0 = r->a.ytab[0].si, *y1 = r->a.ytab[r->a.ny - 1].si + 1;
  }
}

void sdw_image_resizer_commit(sdw_image_resizer *r, int y) {
  if (r->p.stream && area_stream_wants(&r->a, y))
    area_stream_row(&r->a, y, r->rows + (size_t)(y % SDW_IMAGE_RESIZER_BATCH) * r->width * CN);
}

sdw_status sdw_image_resizer_finish(sdw_image_resizer *r, sdw_image *out) {
  out->pixels = NULL;
  out->width = out->height = 0;
  sdw_status st = SDW_OK;
  if (r->p.stream) {
    area_stream_finish(&r->a);
    *out = r->full; /* the stream's output */
    r->full.pixels = NULL;
  } else if (r->p.copy) {
    *out = r->full;
    r->full.pixels = NULL;
  } else {
    st = sdw_image_resize(&r->full, &r->o, out);
  }
  sdw_image_resizer_free(r);
  return st;
}

void sdw_image_resizer_free(sdw_image_resizer *r) {
  if (!r) return;
  area_stream_free(&r->a);
  sdw_image_free(&r->full);
  free(r->rows);
  free(r);
}
