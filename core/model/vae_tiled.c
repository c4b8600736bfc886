/* Tiled VAE encode and decode: diffusers' AutoencoderKL.tiled_encode /
 * tiled_decode (v0.25.1) with the same tile grid, the same in-place
 * blending order and the same crops. Contracts in core/model/vae.h.
 *
 * diffusers runs every tile first and then, row by row and left to right,
 * blends each tile IN PLACE with the (already blended) tile above
 * (blend_v) and the (already blended) tile to its left (blend_h), then
 * keeps its top-left keep x keep corner. Blending only ever reads the
 * previous row and the current one, so two rows of tiles are kept here,
 * in host memory, and a row is blended as soon as it has been run. */
#include <stdlib.h>
#include <string.h>

#include "core/model/vae.h"

static sdw_status tile_plan(const sdw_vae *m, const sdw_vae_tiling *t, bool encode,
                            sdw_vae_tile_plan *out) {
  const int64_t f = sdw_vae_downscale(&m->cfg);
  const int64_t ts = t && t->tile_sample_size > 0 ? t->tile_sample_size : m->cfg.sample_size;
  const double ov = t ? t->overlap : 0.25;
  if (t && t->tile_sample_size < 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE tiling: the tile size must be positive");
  if (!(ov >= 0.0 && ov < 1.0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE tiling: overlap %g is outside [0, 1)", ov);
  if (ts % f != 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE tiling: tile size %lld is not a multiple of the VAE's %lld-pixel latent "
                    "cell",
                    (long long)ts, (long long)f);
  /* diffusers: tile_latent_min_size = int(sample_size / 2**(levels-1)) and,
   * in double precision as Python computes them, */
  const int64_t tl = ts / f;
  sdw_vae_tile_plan p;
  if (encode) {
    p.tile = ts;
    p.stride = (int64_t)((double)ts * (1.0 - ov)); /* overlap_size */
    p.blend = (int64_t)((double)tl * ov);          /* blend_extent */
    p.keep = tl - p.blend;                         /* row_limit */
    p.out_tile = tl;
  } else {
    p.tile = tl;
    p.stride = (int64_t)((double)tl * (1.0 - ov));
    p.blend = (int64_t)((double)ts * ov);
    p.keep = ts - p.blend;
    p.out_tile = ts;
  }
  /* The kept corners must tile the output exactly (keep = stride scaled to
   * the output), else diffusers' own output has the wrong size. */
  const bool exact = encode ? p.keep * f == p.stride : p.keep == p.stride * f;
  if (p.stride < 1 || !exact || (encode && p.stride % f != 0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE tiling: tile size %lld with overlap %g does not give whole latent "
                    "strides (try a multiple of %lld and overlap 0.25)",
                    (long long)ts, ov, (long long)(4 * f));
  *out = p;
  return SDW_OK;
}

sdw_status sdw_vae_tile_plan_encode(const sdw_vae *m, const sdw_vae_tiling *t,
                                    sdw_vae_tile_plan *out) {
  return tile_plan(m, t, true, out);
}

sdw_status sdw_vae_tile_plan_decode(const sdw_vae *m, const sdw_vae_tiling *t,
                                    sdw_vae_tile_plan *out) {
  return tile_plan(m, t, false, out);
}

/* A host tile: NC planes of h x w floats. */
typedef struct host_tile {
  float *data;
  int64_t h, w;
} host_tile;

/* blend_v: b's first e rows fade in from a's last e rows, where e =
 * min(a.h, b.h, blend). Weights are computed in double (Python) and the
 * arithmetic is f32 (torch with Python scalars). */
static void blend_v(const host_tile *a, host_tile *b, int64_t nc, int64_t blend) {
  int64_t e = blend;
  if (a->h < e) e = a->h;
  if (b->h < e) e = b->h;
  SDW_ASSERT(a->w == b->w);
  for (int64_t p = 0; p < nc; p++)
    for (int64_t y = 0; y < e; y++) {
      const float wa = (float)(1.0 - (double)y / (double)e), wb = (float)((double)y / (double)e);
      const float *ar = a->data + (p * a->h + a->h - e + y) * a->w;
      float *br = b->data + (p * b->h + y) * b->w;
      for (int64_t x = 0; x < b->w; x++) {
        const float u = ar[x] * wa, v = br[x] * wb;
        br[x] = u + v;
      }
    }
}

/* blend_h: the same across columns. */
static void blend_h(const host_tile *a, host_tile *b, int64_t nc, int64_t blend) {
  int64_t e = blend;
  if (a->w < e) e = a->w;
  if (b->w < e) e = b->w;
  SDW_ASSERT(a->h == b->h);
  for (int64_t p = 0; p < nc; p++)
    for (int64_t y = 0; y < b->h; y++) {
      const float *ar = a->data + (p * a->h + y) * a->w + a->w - e;
      float *br = b->data + (p * b->h + y) * b->w;
      for (int64_t x = 0; x < e; x++) {
        const float wa = (float)(1.0 - (double)x / (double)e), wb = (float)((double)x / (double)e);
        const float u = ar[x] * wa, v = br[x] * wb;
        br[x] = u + v;
      }
    }
}

/* One tiling run: what varies between encode and decode. */
typedef struct tiled_job {
  sdw_vae *m;
  sdw_arena *arena;
  sdw_vae_tile_plan plan;
  bool encode;
  int64_t n, cin, cout; /* batch, input and output channels */
  int64_t in_h, in_w;   /* input size */
  int64_t out_h, out_w; /* output size */
  int64_t scale_up;     /* output pixels per input pixel (f for decode) */
  int64_t scale_down;   /* input pixels per output pixel (f for encode) */
  const float *in;      /* host [n, cin, in_h, in_w] */
  float *out;           /* host [n, cout, out_h, out_w] */
} tiled_job;

static int64_t out_len(const tiled_job *j, int64_t in_len) {
  return in_len * j->scale_up / j->scale_down;
}

/* Runs the model on the input window at (y0, x0) of th x tw into tile. */
static sdw_status run_tile(tiled_job *j, int64_t y0, int64_t x0, int64_t th, int64_t tw,
                           float *host_in, const sdw_tensor *dev_in, const sdw_tensor *dev_out,
                           host_tile *tile) {
  sdw_ctx *ctx = j->m->ctx;
  const int64_t planes = j->n * j->cin;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t y = 0; y < th; y++)
      memcpy(host_in + (p * th + y) * tw, j->in + (p * j->in_h + y0 + y) * j->in_w + x0,
             (size_t)tw * sizeof(float));
  sdw_tensor in = *dev_in, out = *dev_out;
  in.shape[2] = th;
  in.shape[3] = tw;
  tile->h = out_len(j, th);
  tile->w = out_len(j, tw);
  out.shape[2] = tile->h;
  out.shape[3] = tile->w;
  SDW_TRY(ctx->ops->upload(ctx, in.data, host_in, sdw_tensor_nbytes(&in)));
  SDW_TRY(j->encode ? sdw_vae_encode_moments(j->m, j->arena, &in, &out)
                    : sdw_vae_decode(j->m, j->arena, &in, &out));
  return ctx->ops->download(ctx, tile->data, out.data, sdw_tensor_nbytes(&out));
}

/* Copies the kept corner of tile (i, jx) into the output. */
static void place_tile(tiled_job *j, const host_tile *t, int64_t i, int64_t jx) {
  const int64_t keep = j->plan.keep, oy = i * keep, ox = jx * keep;
  const int64_t kh = t->h < keep ? t->h : keep, kw = t->w < keep ? t->w : keep;
  SDW_ASSERT(oy + kh <= j->out_h && ox + kw <= j->out_w);
  for (int64_t p = 0; p < j->n * j->cout; p++)
    for (int64_t y = 0; y < kh; y++)
      memcpy(j->out + (p * j->out_h + oy + y) * j->out_w + ox, t->data + (p * t->h + y) * t->w,
             (size_t)kw * sizeof(float));
}

static sdw_status tiled_run(tiled_job *j) {
  const sdw_vae_tile_plan *pl = &j->plan;
  sdw_ctx *ctx = j->m->ctx;
  const int64_t rows = (j->in_h + pl->stride - 1) / pl->stride;
  const int64_t cols = (j->in_w + pl->stride - 1) / pl->stride;
  const int64_t in_elems = j->n * j->cin * pl->tile * pl->tile;
  const int64_t out_elems = j->n * j->cout * pl->out_tile * pl->out_tile;
  /* host: the input window, two rows of output tiles */
  float *host_in = malloc((size_t)in_elems * sizeof(float));
  float *tiles = malloc((size_t)(2 * cols * out_elems) * sizeof(float));
  host_tile *row[2] = {calloc((size_t)cols, sizeof(host_tile)),
                       calloc((size_t)cols, sizeof(host_tile))};
  sdw_status st = SDW_OK;
  if (!host_in || !tiles || !row[0] || !row[1])
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for VAE tiles");
  for (int r = 0; st == SDW_OK && r < 2; r++)
    for (int64_t c = 0; c < cols; c++)
      row[r][c].data = tiles + (r * cols + c) * out_elems;
  /* backend: the input and output of one tile, below the forward's slots */
  const size_t mark = sdw_arena_mark(j->arena);
  sdw_tensor dev_in = {0}, dev_out = {0};
  if (st == SDW_OK)
    st = sdw_arena_tensor(j->arena, &dev_in, SDW_F32, 4,
                          (int64_t[]){j->n, j->cin, pl->tile, pl->tile});
  if (st == SDW_OK)
    st = sdw_arena_tensor(j->arena, &dev_out, SDW_F32, 4,
                          (int64_t[]){j->n, j->cout, pl->out_tile, pl->out_tile});
  dev_in.device = dev_out.device = (sdw_device){ctx->ops->device, 0};
  for (int64_t i = 0; st == SDW_OK && i < rows; i++) {
    host_tile *cur = row[i % 2], *prev = row[(i + 1) % 2];
    const int64_t y0 = i * pl->stride;
    const int64_t th = j->in_h - y0 < pl->tile ? j->in_h - y0 : pl->tile;
    for (int64_t c = 0; st == SDW_OK && c < cols; c++) {
      const int64_t x0 = c * pl->stride;
      const int64_t tw = j->in_w - x0 < pl->tile ? j->in_w - x0 : pl->tile;
      st = run_tile(j, y0, x0, th, tw, host_in, &dev_in, &dev_out, &cur[c]);
    }
    for (int64_t c = 0; st == SDW_OK && c < cols; c++) {
      if (i > 0) blend_v(&prev[c], &cur[c], j->n * j->cout, pl->blend);
      if (c > 0) blend_h(&cur[c - 1], &cur[c], j->n * j->cout, pl->blend);
      place_tile(j, &cur[c], i, c);
    }
  }
  sdw_arena_reset_to(j->arena, mark);
  free(host_in);
  free(tiles);
  free(row[0]);
  free(row[1]);
  return st;
}

static bool host_4d(const sdw_tensor *t) {
  return t && t->dtype == SDW_F32 && t->ndim == 4 && t->device.kind == SDW_DEVICE_CPU && t->data;
}

static sdw_status check_host(const sdw_tensor *t, const char *what, int64_t n, int64_t c, int64_t h,
                             int64_t w) {
  char have[96];
  if (!host_4d(t) || t->shape[0] != n || t->shape[1] != c || t->shape[2] != h || t->shape[3] != w)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE (tiled): %s must be an F32 host tensor [%lld, %lld, %lld, %lld] (it is "
                    "%s)",
                    what, (long long)n, (long long)c, (long long)h, (long long)w,
                    t ? sdw_shape_str(t, have, sizeof have) : "NULL");
  return SDW_OK;
}

/* The untiled call through host staging (inputs no larger than a tile). */
static sdw_status whole(tiled_job *j) {
  sdw_ctx *ctx = j->m->ctx;
  const size_t mark = sdw_arena_mark(j->arena);
  sdw_tensor in, out;
  sdw_status st =
      sdw_arena_tensor(j->arena, &in, SDW_F32, 4, (int64_t[]){j->n, j->cin, j->in_h, j->in_w});
  if (st == SDW_OK)
    st = sdw_arena_tensor(j->arena, &out, SDW_F32, 4,
                          (int64_t[]){j->n, j->cout, j->out_h, j->out_w});
  in.device = out.device = (sdw_device){ctx->ops->device, 0};
  if (st == SDW_OK) st = ctx->ops->upload(ctx, in.data, j->in, sdw_tensor_nbytes(&in));
  if (st == SDW_OK)
    st = j->encode ? sdw_vae_encode_moments(j->m, j->arena, &in, &out)
                   : sdw_vae_decode(j->m, j->arena, &in, &out);
  if (st == SDW_OK) st = ctx->ops->download(ctx, j->out, out.data, sdw_tensor_nbytes(&out));
  sdw_arena_reset_to(j->arena, mark);
  return st;
}

sdw_status sdw_vae_decode_tiled(sdw_vae *m, sdw_arena *arena, const sdw_vae_tiling *tiling,
                                const sdw_tensor *latents, sdw_tensor *image) {
  const sdw_vae_config *c = &m->cfg;
  const int64_t f = sdw_vae_downscale(c);
  tiled_job j = {.m = m, .arena = arena, .encode = false, .scale_up = f, .scale_down = 1};
  SDW_TRY(tile_plan(m, tiling, false, &j.plan));
  if (!host_4d(latents) || latents->shape[0] < 1 || latents->shape[2] < 1 || latents->shape[3] < 1)
    return check_host(latents, "latents", 1, c->latent_channels, 1, 1);
  j.n = latents->shape[0];
  j.cin = c->latent_channels;
  j.cout = c->out_channels;
  j.in_h = latents->shape[2];
  j.in_w = latents->shape[3];
  j.out_h = j.in_h * f;
  j.out_w = j.in_w * f;
  SDW_TRY(check_host(latents, "latents", j.n, j.cin, j.in_h, j.in_w));
  SDW_TRY(check_host(image, "image", j.n, j.cout, j.out_h, j.out_w));
  j.in = latents->data;
  j.out = image->data;
  if (j.in_h <= j.plan.tile && j.in_w <= j.plan.tile) return whole(&j);
  return tiled_run(&j);
}

sdw_status sdw_vae_encode_tiled(sdw_vae *m, sdw_arena *arena, const sdw_vae_tiling *tiling,
                                const sdw_tensor *image, sdw_tensor *mean, sdw_tensor *logvar) {
  const sdw_vae_config *c = &m->cfg;
  const int64_t f = sdw_vae_downscale(c), L = c->latent_channels;
  tiled_job j = {.m = m, .arena = arena, .encode = true, .scale_up = 1, .scale_down = f};
  SDW_TRY(tile_plan(m, tiling, true, &j.plan));
  if (!host_4d(image) || image->shape[0] < 1 || image->shape[2] < 1 || image->shape[3] < 1 ||
      image->shape[2] % f != 0 || image->shape[3] % f != 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE (tiled): image must be an F32 host tensor [batch, %d, height, width] "
                    "with height and width multiples of %lld",
                    c->in_channels, (long long)f);
  j.n = image->shape[0];
  j.cin = c->in_channels;
  j.cout = 2 * L;
  j.in_h = image->shape[2];
  j.in_w = image->shape[3];
  j.out_h = j.in_h / f;
  j.out_w = j.in_w / f;
  SDW_TRY(check_host(image, "image", j.n, j.cin, j.in_h, j.in_w));
  SDW_TRY(check_host(mean, "mean", j.n, L, j.out_h, j.out_w));
  SDW_TRY(check_host(logvar, "logvar", j.n, L, j.out_h, j.out_w));
  const int64_t plane = j.out_h * j.out_w;
  float *moments = malloc((size_t)(j.n * j.cout * plane) * sizeof(float));
  if (!moments) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for VAE moments");
  j.in = image->data;
  j.out = moments;
  sdw_status st = j.in_h <= j.plan.tile && j.in_w <= j.plan.tile ? whole(&j) : tiled_run(&j);
  /* DiagonalGaussianDistribution: chunk into mean | logvar, clamp logvar
   * to [-30, 20] (NaN stays NaN, as torch.clamp) */
  float *mo = mean->data, *lo = logvar->data;
  for (int64_t n = 0; st == SDW_OK && n < j.n; n++) {
    const float *src = moments + n * j.cout * plane;
    memcpy(mo + n * L * plane, src, (size_t)(L * plane) * sizeof(float));
    for (int64_t i = 0; i < L * plane; i++) {
      const float v = src[L * plane + i];
      lo[n * L * plane + i] = v < -30.0f ? -30.0f : v > 20.0f ? 20.0f : v;
    }
  }
  free(moments);
  return st;
}
