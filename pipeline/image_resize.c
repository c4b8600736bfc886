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
#include <stdlib.h>
#include <string.h>

#include "pipeline/image.h"

#if defined(__AVX512F__)
#include <immintrin.h>
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
static void area_hpass(const v4f *src, int dw, int K, const int *xstart, const v4f *xw, v4f *dst) {
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

static sdw_status resize_area_fractional(const sdw_image *in, int dw, int dh, double scale_x,
                                         double scale_y, sdw_image *out) {
  int sw = in->width, sh = in->height;
  size_t row_len = (size_t)dw * 4; /* floats of an RGBX row */
  decimate *xtab = malloc(sizeof(decimate) * ((size_t)sw * 2 + 2));
  decimate *ytab = malloc(sizeof(decimate) * ((size_t)sh * 2 + 2));
  int *xstart = calloc((size_t)dw, sizeof(int));
  v4f *xw = NULL;
  /* RGBX rows: the source row (+ padding taps), the horizontal sums, the
   * vertical accumulator */
  v4f *buf = NULL;
  sdw_status st = SDW_OK;
  if (!xtab || !ytab || !xstart) goto oom;
  int nx = area_table(sw, dw, scale_x, xtab);
  int ny = area_table(sh, dh, scale_y, ytab);
  /* taps per output pixel: the widest run of table entries */
  int K = 1;
  for (int k = 0, run = 0; k < nx; k++) {
    run = k > 0 && xtab[k].di == xtab[k - 1].di ? run + 1 : 1;
    if (run > K) K = run;
  }
  xw = aligned_alloc(64, sizeof(v4f) * (((size_t)dw * K + 3) & ~(size_t)3));
  if (xw) memset(xw, 0, sizeof(v4f) * (size_t)dw * K);
  buf = aligned_alloc(64, sizeof(v4f) * (((size_t)sw + K + (size_t)dw * 2 + 15) & ~(size_t)15));
  if (!xw || !buf) goto oom;
  for (int k = 0, t = 0; k < nx; k++) {
    int di = xtab[k].di;
    t = k > 0 && di == xtab[k - 1].di ? t + 1 : 0;
    if (t == 0) xstart[di] = xtab[k].si;
    float a = xtab[k].alpha;
    xw[(size_t)t * dw + di] = (v4f){a, a, a, a};
  }
  st = sdw_image_alloc(dw, dh, out);
  if (st != SDW_OK) goto done;
  v4f *src = buf, *hrow = buf + sw + K, *sumv = hrow + dw;
  /* padding taps read past the row end with zero weight: make them zeros */
  for (int x = sw; x < sw + K; x++)
    src[x] = (v4f){0.f, 0.f, 0.f, 0.f};
  float *h = (float *)hrow, *sum = (float *)sumv;
  memset(sum, 0, sizeof(float) * row_len);
  int prev_dy = ytab[0].di, cached_sy = -1;
  for (int j = 0; j < ny; j++) {
    float beta = ytab[j].alpha;
    int dy = ytab[j].di, sy = ytab[j].si;
    if (sy != cached_sy) { /* the same source row recomputes identically */
      row_to_rgbx(in->pixels + (size_t)sy * sw * CN, sw, src);
      area_hpass(src, dw, K, xstart, xw, hrow);
      cached_sy = sy;
    }
    if (dy != prev_dy) {
      store_rgbx(sum, dw, out->pixels + (size_t)prev_dy * dw * CN);
      for (size_t x = 0; x < row_len; x++)
        sum[x] = beta * h[x];
      prev_dy = dy;
    } else {
      for (size_t x = 0; x < row_len; x++)
        sum[x] += beta * h[x];
    }
  }
  store_rgbx(sum, dw, out->pixels + (size_t)prev_dy * dw * CN);
  goto done;
oom:
  st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory resizing %dx%d to %dx%d", sw, sh, dw, dh);
done:
  free(xtab);
  free(ytab);
  free(xstart);
  free(xw);
  free(buf);
  return st;
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

sdw_status sdw_image_resize_area(const sdw_image *in, int width, int height, sdw_image *out) {
  SDW_TRY(check_target(in, width, height));
  if (width == in->width && height == in->height) return image_copy(in, out);
  double inv_sx = (double)width / in->width, inv_sy = (double)height / in->height;
  double sx = 1. / inv_sx, sy = 1. / inv_sy;
  if (sx >= 1 && sy >= 1) {
    int ix = (int)lrint(sx), iy = (int)lrint(sy);
    if (fabs(sx - ix) < 2.220446049250313e-16 && fabs(sy - iy) < 2.220446049250313e-16)
      return resize_area_integer(in, width, height, ix, iy, out);
    return resize_area_fractional(in, width, height, sx, sy, out);
  }
  return resize_generic(in, width, height, METHOD_LINEAR_AREA, out);
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

sdw_status sdw_image_resize(const sdw_image *in, const sdw_resize_options *o, sdw_image *out) {
  out->pixels = NULL;
  out->width = out->height = 0;
  if (!check_image(in)) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: empty input image");
  if (o->mode == SDW_RESIZE_NO) return image_copy(in, out);
  if (o->size < 1) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "resize: size %d < 1", o->size);
  int w = in->width, h = in->height;
  int by_smaller = o->mode == SDW_RESIZE_KEEP_RATIO || o->mode == SDW_RESIZE_CENTER_CROP;
  int ref = by_smaller ? (w < h ? w : h) : (w > h ? w : h);
  int downscale = ref > o->size;
  if (o->resize_only_if_bigger && !downscale) return image_copy(in, out);
  /* albumentations: scale = size / side; new = max(1, round(side * scale)) */
  double scale = (double)o->size / ref;
  double nwf = nearbyint(w * scale), nhf = nearbyint(h * scale);
  int nw = nwf < 1 ? 1 : nwf > 1e9 ? 1000000000 : (int)nwf;
  int nh = nhf < 1 ? 1 : nhf > 1e9 ? 1000000000 : (int)nhf;
  sdw_image scaled;
  if (nw == w && nh == h)
    SDW_TRY(image_copy(in, &scaled));
  else if (downscale)
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
