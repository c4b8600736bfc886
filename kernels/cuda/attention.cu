/* CUDA multi-head attention, forward and backward (kernels/ops.h), a simple
 * tiled flash-style kernel set in fp32 (correctness first; tensor-core
 * versions come after the parity tests have run on a GPU).
 *
 * Heads stay interleaved (q[B,Tq,H,Dh]: a head's rows have stride H*Dh).
 * One warp owns one query row (forward, dQ) or one key row (dK, dV); a block
 * of kRows warps shares tiles of kTile rows of the other side in shared
 * memory (row length Dh+1, so lanes reading different rows hit different
 * banks). Each lane holds ceil(Dh/32) accumulator columns (d = lane + 32t).
 *
 * Forward: per key tile, lane j scores key j0+j (a full dot product from
 * shared memory), the warp folds the tile into the online softmax (running
 * max m, sum l; acc rescaled by exp(m_old - m_new)), then acc += p_j v_j with
 * p_j broadcast by shuffles. out = acc / l, lse = m + log l; a row with no
 * visible key gets out = 0 and lse = -inf.
 * Backward (nothing but lse is kept): D_i = rowsum(dO_i * O_i) first; then
 *   dQ kernel (query rows):  p = exp(s - lse), dp = dO.v_j, ds = p (dp - D) scale,
 *                            dq += sum_j ds k_j
 *   dKV kernel (key rows):   dv += sum_i p dO_i, dk += sum_i ds q_i
 * so every output row is written by one warp: no atomics, deterministic.
 * Gradients accumulate (+=); rows with lse = -inf contribute nothing.
 *
 * Masking: key j of batch b is removed when key_mask[b,j] == 0, and for
 * query i when causal and j > i. Head dims up to 512 (VAE attention). */
#include <math.h>

#include "kernels/cuda/cuda_common.h"

namespace {

enum { kRows = 4, kMaxDh = 512 };

struct Geo {
  int64_t b, tq, tk, h, dh, ld; /* ld = H*Dh */
  const float *q, *k, *v;
  const unsigned char *mask; /* [B,Tk] or NULL */
  bool causal;
  float scale;
  int tile; /* rows per shared tile (32 or 16) */
};

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* rows [r0, r0+tile) of a [B,T,H,Dh] tensor for (b, h) into sh[tile][Dh+1] (zeros past T). */
__device__ inline void load_tile(float *sh, const float *src, int64_t bi, int64_t hi, int64_t r0,
                                 int64_t t, const Geo &g) {
  int64_t ld1 = g.dh + 1;
  for (int64_t e = threadIdx.x; e < (int64_t)g.tile * g.dh; e += blockDim.x) {
    int64_t r = e / g.dh, d = e % g.dh, row = r0 + r;
    sh[r * ld1 + d] = row < t ? src[((bi * t + row) * g.h + hi) * g.dh + d] : 0.0f;
  }
}

__device__ inline bool key_visible(const Geo &g, int64_t bi, int64_t i, int64_t j) {
  if (j >= g.tk) return false;
  if (g.mask && !g.mask[bi * g.tk + j]) return false;
  if (g.causal && j > i) return false;
  return true;
}

/* dot(a[0..dh), b[0..dh)) */
__device__ inline float dot(const float *a, const float *b, int64_t dh) {
  float s = 0.0f;
  for (int64_t d = 0; d < dh; d++)
    s = fmaf(a[d], b[d], s);
  return s;
}

template <int NACC> __global__ void attn_forward_kernel(Geo g, float *out, float *lse) {
  extern __shared__ float smem[];
  const int64_t ld1 = g.dh + 1;
  float *ks = smem, *vs = ks + g.tile * ld1, *qs = vs + g.tile * ld1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.y, bi = bh / g.h, hi = bh % g.h;
  const int64_t i0 = (int64_t)blockIdx.x * kRows, i = i0 + warp;
  const bool valid = i < g.tq;
  float *qrow = qs + warp * g.dh;
  for (int64_t d = lane; d < g.dh; d += 32)
    qrow[d] = valid ? g.q[((bi * g.tq + i) * g.h + hi) * g.dh + d] : 0.0f;
  float acc[NACC];
#pragma unroll
  for (int t = 0; t < NACC; t++)
    acc[t] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  int64_t last = i0 + kRows - 1 < g.tq - 1 ? i0 + kRows - 1 : g.tq - 1;
  int64_t kend = g.causal ? (last + 1 < g.tk ? last + 1 : g.tk) : g.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += g.tile) {
    __syncthreads();
    load_tile(ks, g.k, bi, hi, j0, g.tk, g);
    load_tile(vs, g.v, bi, hi, j0, g.tk, g);
    __syncthreads();
    if (!valid) continue;
    float s = -INFINITY;
    if (lane < g.tile && key_visible(g, bi, i, j0 + lane))
      s = dot(qrow, ks + lane * ld1, g.dh) * g.scale;
    float mt = warp_max(s);
    if (mt == -INFINITY) continue;
    float mn = fmaxf(m, mt);
    float corr = expf(m - mn);
    float p = s == -INFINITY ? 0.0f : expf(s - mn);
    l = l * corr + warp_sum(p);
    m = mn;
#pragma unroll
    for (int t = 0; t < NACC; t++)
      acc[t] *= corr;
    for (int jj = 0; jj < g.tile; jj++) {
      float pj = __shfl_sync(0xffffffffu, p, jj);
      if (pj == 0.0f) continue;
      const float *vr = vs + jj * ld1;
#pragma unroll
      for (int t = 0; t < NACC; t++) {
        int64_t d = lane + 32 * t;
        if (d < g.dh) acc[t] = fmaf(pj, vr[d], acc[t]);
      }
    }
  }
  if (!valid) return;
  float *orow = out + ((bi * g.tq + i) * g.h + hi) * g.dh;
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int t = 0; t < NACC; t++) {
    int64_t d = lane + 32 * t;
    if (d < g.dh) orow[d] = acc[t] * inv;
  }
  if (lse && lane == 0) lse[bh * g.tq + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

/* dsum[(b*H + h)*Tq + i] = sum_d dout * out (one warp per row). */
__global__ void attn_dsum_kernel(const float *out, const float *dout, float *dsum, int64_t b,
                                 int64_t tq, int64_t h, int64_t dh) {
  int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (row >= b * tq * h) return;
  const float *o = out + row * dh, *d_o = dout + row * dh;
  float s = 0.0f;
  for (int64_t d = lane; d < dh; d += 32)
    s = fmaf(o[d], d_o[d], s);
  s = warp_sum(s);
  /* row = (bi*Tq + i)*H + hi */
  int64_t hi = row % h, i = (row / h) % tq, bi = row / (h * tq);
  if (lane == 0) dsum[(bi * h + hi) * tq + i] = s;
}

template <int NACC>
__global__ void attn_dq_kernel(Geo g, const float *lse, const float *dsum, const float *dout,
                               float *dq) {
  extern __shared__ float smem[];
  const int64_t ld1 = g.dh + 1;
  float *ks = smem, *vs = ks + g.tile * ld1, *qs = vs + g.tile * ld1, *dos = qs + kRows * g.dh;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.y, bi = bh / g.h, hi = bh % g.h;
  const int64_t i0 = (int64_t)blockIdx.x * kRows, i = i0 + warp;
  const float li = i < g.tq ? lse[bh * g.tq + i] : -INFINITY;
  const bool valid = i < g.tq && li != -INFINITY;
  const float di = valid ? dsum[bh * g.tq + i] : 0.0f;
  float *qrow = qs + warp * g.dh, *dorow = dos + warp * g.dh;
  for (int64_t d = lane; d < g.dh; d += 32) {
    int64_t off = ((bi * g.tq + i) * g.h + hi) * g.dh + d;
    qrow[d] = valid ? g.q[off] : 0.0f;
    dorow[d] = valid ? dout[off] : 0.0f;
  }
  float acc[NACC];
#pragma unroll
  for (int t = 0; t < NACC; t++)
    acc[t] = 0.0f;
  int64_t last = i0 + kRows - 1 < g.tq - 1 ? i0 + kRows - 1 : g.tq - 1;
  int64_t kend = g.causal ? (last + 1 < g.tk ? last + 1 : g.tk) : g.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += g.tile) {
    __syncthreads();
    load_tile(ks, g.k, bi, hi, j0, g.tk, g);
    load_tile(vs, g.v, bi, hi, j0, g.tk, g);
    __syncthreads();
    if (!valid) continue;
    float ds = 0.0f;
    if (lane < g.tile && key_visible(g, bi, i, j0 + lane)) {
      float s = dot(qrow, ks + lane * ld1, g.dh) * g.scale;
      float p = expf(s - li);
      float dp = dot(dorow, vs + lane * ld1, g.dh);
      ds = p * (dp - di) * g.scale;
    }
    for (int jj = 0; jj < g.tile; jj++) {
      float dsj = __shfl_sync(0xffffffffu, ds, jj);
      if (dsj == 0.0f) continue;
      const float *kr = ks + jj * ld1;
#pragma unroll
      for (int t = 0; t < NACC; t++) {
        int64_t d = lane + 32 * t;
        if (d < g.dh) acc[t] = fmaf(dsj, kr[d], acc[t]);
      }
    }
  }
  if (!valid) return;
  float *row = dq + ((bi * g.tq + i) * g.h + hi) * g.dh;
#pragma unroll
  for (int t = 0; t < NACC; t++) {
    int64_t d = lane + 32 * t;
    if (d < g.dh) row[d] += acc[t];
  }
}

template <int NACC>
__global__ void attn_dkv_kernel(Geo g, const float *lse, const float *dsum, const float *dout,
                                float *dk, float *dv) {
  extern __shared__ float smem[];
  const int64_t ld1 = g.dh + 1;
  float *qs = smem, *dos = qs + g.tile * ld1, *krs = dos + g.tile * ld1, *vrs = krs + kRows * g.dh;
  float *ls = vrs + kRows * g.dh, *dss = ls + g.tile;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.y, bi = bh / g.h, hi = bh % g.h;
  const int64_t j0k = (int64_t)blockIdx.x * kRows, j = j0k + warp;
  const bool valid = j < g.tk && !(g.mask && !g.mask[bi * g.tk + j]);
  float *krow = krs + warp * g.dh, *vrow = vrs + warp * g.dh;
  for (int64_t d = lane; d < g.dh; d += 32) {
    int64_t off = ((bi * g.tk + j) * g.h + hi) * g.dh + d;
    krow[d] = valid ? g.k[off] : 0.0f;
    vrow[d] = valid ? g.v[off] : 0.0f;
  }
  float adk[NACC], adv[NACC];
#pragma unroll
  for (int t = 0; t < NACC; t++)
    adk[t] = adv[t] = 0.0f;
  /* causal: queries i >= j see key j; start at the block's first key */
  int64_t qstart = g.causal ? j0k / g.tile * g.tile : 0;
  for (int64_t q0 = qstart; q0 < g.tq; q0 += g.tile) {
    __syncthreads();
    load_tile(qs, g.q, bi, hi, q0, g.tq, g);
    load_tile(dos, dout, bi, hi, q0, g.tq, g);
    for (int e = threadIdx.x; e < g.tile; e += blockDim.x) {
      int64_t qi = q0 + e;
      ls[e] = qi < g.tq ? lse[bh * g.tq + qi] : -INFINITY;
      dss[e] = qi < g.tq ? dsum[bh * g.tq + qi] : 0.0f;
    }
    __syncthreads();
    if (!valid) continue;
    float p = 0.0f, ds = 0.0f;
    int64_t qi = q0 + lane;
    if (lane < g.tile && qi < g.tq && ls[lane] != -INFINITY && !(g.causal && j > qi)) {
      float s = dot(qs + lane * ld1, krow, g.dh) * g.scale;
      p = expf(s - ls[lane]);
      float dp = dot(dos + lane * ld1, vrow, g.dh);
      ds = p * (dp - dss[lane]) * g.scale;
    }
    for (int ii = 0; ii < g.tile; ii++) {
      float pi = __shfl_sync(0xffffffffu, p, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
      if (pi == 0.0f && dsi == 0.0f) continue;
      const float *qr = qs + ii * ld1, *dor = dos + ii * ld1;
#pragma unroll
      for (int t = 0; t < NACC; t++) {
        int64_t d = lane + 32 * t;
        if (d < g.dh) {
          adv[t] = fmaf(pi, dor[d], adv[t]);
          adk[t] = fmaf(dsi, qr[d], adk[t]);
        }
      }
    }
  }
  if (!valid) return;
  int64_t off = ((bi * g.tk + j) * g.h + hi) * g.dh;
#pragma unroll
  for (int t = 0; t < NACC; t++) {
    int64_t d = lane + 32 * t;
    if (d < g.dh) {
      if (dk) dk[off + d] += adk[t];
      if (dv) dv[off + d] += adv[t];
    }
  }
}

size_t smem_forward(const Geo &g) {
  return sizeof(float) * (2 * g.tile * (g.dh + 1) + kRows * g.dh);
}
size_t smem_dq(const Geo &g) {
  return sizeof(float) * (2 * g.tile * (g.dh + 1) + 2 * kRows * g.dh);
}
size_t smem_dkv(const Geo &g) {
  return sizeof(float) * (2 * g.tile * (g.dh + 1) + 2 * kRows * g.dh + 2 * g.tile);
}

template <typename K> sdw_status set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  return SDW_OK;
}

/* The smallest accumulator width (columns per lane) that holds Dh. */
int nacc_for(int64_t dh) {
  if (dh <= 64) return 2;
  if (dh <= 128) return 4;
  if (dh <= 160) return 5;
  if (dh <= 256) return 8;
  return 16;
}

/* Tile rows: 32, or 16 when 32 does not fit the device's shared memory. */
sdw_status pick_tile(sdw_ctx *ctx, Geo *g) {
  size_t limit = (size_t)cuda_impl(ctx)->max_smem_optin;
  for (int tile = 32; tile >= 8; tile /= 2) {
    g->tile = tile;
    if (smem_forward(*g) <= limit && smem_dq(*g) <= limit && smem_dkv(*g) <= limit) return SDW_OK;
  }
  return sdw_fail(SDW_ERR_UNSUPPORTED,
                  "cuda attention: head dim %lld needs more shared memory "
                  "than this device has (%zu bytes per block)",
                  (long long)g->dh, limit);
}

template <int NACC> sdw_status launch_forward(sdw_ctx *ctx, const Geo &g, float *out, float *lse) {
  size_t bytes = smem_forward(g);
  SDW_TRY(set_smem(attn_forward_kernel<NACC>, bytes));
  dim3 grid((unsigned)((g.tq + kRows - 1) / kRows), (unsigned)(g.b * g.h));
  attn_forward_kernel<NACC><<<grid, 32 * kRows, bytes, cuda_stream(ctx)>>>(g, out, lse);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

template <int NACC>
sdw_status launch_backward(sdw_ctx *ctx, const Geo &g, const float *lse, const float *dsum,
                           const float *dout, float *dq, float *dk, float *dv) {
  cudaStream_t st = cuda_stream(ctx);
  if (dq) {
    size_t bytes = smem_dq(g);
    SDW_TRY(set_smem(attn_dq_kernel<NACC>, bytes));
    dim3 grid((unsigned)((g.tq + kRows - 1) / kRows), (unsigned)(g.b * g.h));
    attn_dq_kernel<NACC><<<grid, 32 * kRows, bytes, st>>>(g, lse, dsum, dout, dq);
    CUDA_LAUNCH_TRY();
  }
  if (dk || dv) {
    size_t bytes = smem_dkv(g);
    SDW_TRY(set_smem(attn_dkv_kernel<NACC>, bytes));
    dim3 grid((unsigned)((g.tk + kRows - 1) / kRows), (unsigned)(g.b * g.h));
    attn_dkv_kernel<NACC><<<grid, 32 * kRows, bytes, st>>>(g, lse, dsum, dout, dk, dv);
    CUDA_LAUNCH_TRY();
  }
  return SDW_OK;
}

void check_qkv(const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v,
               const sdw_tensor *key_mask, const sdw_tensor *out, const sdw_tensor *lse) {
  cuda_check_f32(q);
  cuda_check_f32(k);
  cuda_check_f32(v);
  SDW_ASSERT(q->ndim == 4 && k->ndim == 4 && sdw_tensor_same_shape(k, v));
  SDW_ASSERT(k->shape[0] == q->shape[0] && k->shape[2] == q->shape[2] &&
             k->shape[3] == q->shape[3]);
  if (out) cuda_check_same_f32(q, out);
  if (lse) {
    cuda_check_f32(lse);
    SDW_ASSERT(lse->ndim == 3 && lse->shape[0] == q->shape[0] && lse->shape[1] == q->shape[2] &&
               lse->shape[2] == q->shape[1]);
  }
  if (key_mask) {
    cuda_check_dev(key_mask);
    SDW_ASSERT(key_mask->dtype == SDW_U8 && key_mask->ndim == 2 &&
               key_mask->shape[0] == q->shape[0] && key_mask->shape[1] == k->shape[1]);
  }
}

Geo geo_make(const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v,
             const sdw_tensor *key_mask, bool causal, float scale) {
  Geo g;
  g.b = q->shape[0], g.tq = q->shape[1], g.h = q->shape[2], g.dh = q->shape[3];
  g.tk = k->shape[1], g.ld = g.h * g.dh;
  g.q = (const float *)q->data, g.k = (const float *)k->data, g.v = (const float *)v->data;
  g.mask = key_mask ? (const unsigned char *)key_mask->data : NULL;
  g.causal = causal, g.scale = scale, g.tile = 32;
  return g;
}

} // namespace

sdw_status sdw_cuda_attention_forward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                      const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                      float scale, sdw_tensor *out, sdw_tensor *lse) {
  check_qkv(q, k, v, key_mask, out, lse);
  Geo g = geo_make(q, k, v, key_mask, causal, scale);
  if (g.dh > kMaxDh)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "cuda attention: head dim %lld > %d is not supported",
                    (long long)g.dh, kMaxDh);
  if (!g.b || !g.tq || !g.h || !g.dh) return SDW_OK;
  SDW_ASSERT(g.b * g.h <= 65535 && (g.tq + kRows - 1) / kRows <= INT32_MAX);
  SDW_TRY(pick_tile(ctx, &g));
  float *op = (float *)out->data, *lp = lse ? (float *)lse->data : NULL;
  switch (nacc_for(g.dh)) {
  case 2: return launch_forward<2>(ctx, g, op, lp);
  case 4: return launch_forward<4>(ctx, g, op, lp);
  case 5: return launch_forward<5>(ctx, g, op, lp);
  case 8: return launch_forward<8>(ctx, g, op, lp);
  default: return launch_forward<16>(ctx, g, op, lp);
  }
}

sdw_status sdw_cuda_attention_backward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                       const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                       float scale, const sdw_tensor *out, const sdw_tensor *lse,
                                       const sdw_tensor *dout, sdw_tensor *dq, sdw_tensor *dk,
                                       sdw_tensor *dv) {
  SDW_ASSERT(out != NULL && lse != NULL && dout != NULL);
  check_qkv(q, k, v, key_mask, out, lse);
  cuda_check_same_f32(q, dout);
  if (dq) cuda_check_same_f32(q, dq);
  if (dk) cuda_check_same_f32(k, dk);
  if (dv) cuda_check_same_f32(v, dv);
  if (!dq && !dk && !dv) return SDW_OK;
  Geo g = geo_make(q, k, v, key_mask, causal, scale);
  if (g.dh > kMaxDh)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "cuda attention: head dim %lld > %d is not supported",
                    (long long)g.dh, kMaxDh);
  if (!g.b || !g.tq || !g.tk || !g.h || !g.dh) return SDW_OK;
  SDW_ASSERT(g.b * g.h <= 65535);
  SDW_TRY(pick_tile(ctx, &g));
  int64_t rows = g.b * g.tq * g.h;
  void *ws = NULL;
  SDW_TRY(sdw_cuda_workspace(ctx, sizeof(float) * (size_t)rows, &ws));
  float *dsum = (float *)ws;
  attn_dsum_kernel<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_stream(ctx)>>>(
      (const float *)out->data, (const float *)dout->data, dsum, g.b, g.tq, g.h, g.dh);
  CUDA_LAUNCH_TRY();
  const float *lp = (const float *)lse->data, *dop = (const float *)dout->data;
  float *dqp = dq ? (float *)dq->data : NULL, *dkp = dk ? (float *)dk->data : NULL;
  float *dvp = dv ? (float *)dv->data : NULL;
  switch (nacc_for(g.dh)) {
  case 2: return launch_backward<2>(ctx, g, lp, dsum, dop, dqp, dkp, dvp);
  case 4: return launch_backward<4>(ctx, g, lp, dsum, dop, dqp, dkp, dvp);
  case 5: return launch_backward<5>(ctx, g, lp, dsum, dop, dqp, dkp, dvp);
  case 8: return launch_backward<8>(ctx, g, lp, dsum, dop, dqp, dkp, dvp);
  default: return launch_backward<16>(ctx, g, lp, dsum, dop, dqp, dkp, dvp);
  }
}
