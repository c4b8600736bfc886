/* Multi-head scaled-dot-product attention (CPU), flash style.
 *
 * Work is cut into blocks of query rows (up to 256) and of keys (up to 512,
 * so a score block stays in the L2), and the heads stay interleaved: a
 * head's rows have stride H*Dh, passed to sgemm as the leading dimension,
 * so nothing is copied.
 *
 * Forward: the work items are (batch, head, query block), spread over the
 * threads. For each key block an item computes S = scale * Q_blk K_blk^T
 * with one sgemm, turns S into exp(S - m) in place (row max, exp, sum:
 * kernels/cpu/vexp.h) and accumulates P V_blk with a second sgemm. Key
 * blocks are folded in with the online softmax: a row's running max m and
 * sum l, and its output so far, are rescaled by exp(m_old - m_new) when a
 * block raises the max. At the end out = acc / l and lse = m + log(l).
 *
 * Backward: nothing but lse is kept from the forward, so each item
 * recomputes S and P = exp(S - lse) block by block and then, with dO the
 * block of dout,
 *   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)) * scale,
 *   dQ += dS K,    dK += dS^T Q_blk
 * (five sgemms: 10 B H Tq Tk Dh flops with the recompute). dQ rows belong to
 * one item; dK and dV gather every query block of a (batch, head), so either
 * each thread owns whole (batch, head) pairs (when there are enough of them
 * to share out evenly) or the query blocks of one pair are shared and each
 * thread accumulates into private dK/dV partials, summed at the end.
 *
 * Masking: key j of batch b is removed when key_mask[b,j] == 0 (an additive
 * 0 / -inf row built once per call) or, when causal, for queries i < j (a
 * query block only visits the keys up to its last query). A query with no
 * key left gets out = 0, lse = -inf, and zero gradients.
 *
 * Scratch (ctx->scratch, released before returning): per thread one score
 * block of bq x bk floats (two in the backward) and a bq x Dh accumulator,
 * plus the dK/dV partials (Tk x Dh each) when those are used. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vexp.h"

typedef struct attn_geom {
  int64_t b, tq, tk, h, dh;
  int64_t ld;  /* row stride of q, k, v, out (and their gradients): H*Dh */
  int64_t bq;  /* query rows per block */
  int64_t nqb; /* query blocks per (batch, head) */
  int64_t bk;  /* keys per block */
  int64_t sld; /* leading dimension of a score block */
  bool causal;
  float scale;
  const float *q, *k, *v;
  const float *mask_bias; /* [B,Tk]: 0 or -inf; NULL without a key mask */
} attn_geom;

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static void attn_check_shapes(const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v,
                              const sdw_tensor *key_mask, const sdw_tensor *out,
                              const sdw_tensor *lse) {
  SDW_ASSERT(q->dtype == SDW_F32 && k->dtype == SDW_F32 && v->dtype == SDW_F32);
  SDW_ASSERT(q->ndim == 4 && k->ndim == 4 && v->ndim == 4);
  SDW_ASSERT(sdw_tensor_same_shape(k, v));
  SDW_ASSERT(k->shape[0] == q->shape[0] && k->shape[2] == q->shape[2] &&
             k->shape[3] == q->shape[3]);
  SDW_ASSERT(q->shape[3] >= 1);
  if (out) SDW_ASSERT(out->dtype == SDW_F32 && sdw_tensor_same_shape(out, q));
  if (lse)
    SDW_ASSERT(lse->dtype == SDW_F32 && lse->ndim == 3 && lse->shape[0] == q->shape[0] &&
               lse->shape[1] == q->shape[2] && lse->shape[2] == q->shape[1]);
  if (key_mask)
    SDW_ASSERT(key_mask->dtype == SDW_U8 && key_mask->ndim == 2 &&
               key_mask->shape[0] == q->shape[0] && key_mask->shape[1] == k->shape[1]);
}

/* Block sizes, measured on Zen4 with OpenBLAS 0.3.21 for Dh 40..160 at
 * T 1024 and 4096 (bq 128..512 and bk 256..1024 were within a few percent
 * of each other; 256 x 512 was best overall). */
enum { ATTN_BQ_MAX = 256, ATTN_BK_MAX = 512 };

/* Query rows per block: OpenBLAS packs the key block afresh for every
 * score product, so tall blocks amortise that. Blocks are evened out over
 * the query rows and split further when there would be fewer items than
 * threads. */
static int64_t attn_block_rows(int64_t pairs, int64_t tq, int threads) {
  if (tq <= 0) return 1;
  int64_t blocks = (tq + ATTN_BQ_MAX - 1) / ATTN_BQ_MAX;
  if (pairs > 0 && pairs * blocks < threads) blocks = (threads + pairs - 1) / pairs;
  int64_t bq = round_up((tq + blocks - 1) / blocks, 16);
  return bq < tq ? bq : tq;
}

static sdw_status attn_geom_make(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                 const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                 float scale, int threads, attn_geom *g) {
  *g = (attn_geom){.b = q->shape[0],
                   .tq = q->shape[1],
                   .tk = k->shape[1],
                   .h = q->shape[2],
                   .dh = q->shape[3],
                   .causal = causal,
                   .scale = scale,
                   .q = q->data,
                   .k = k->data,
                   .v = v->data};
  g->ld = g->h * g->dh;
  SDW_ASSERT(g->ld <= INT32_MAX && g->tq <= INT32_MAX && g->tk <= INT32_MAX);
  g->bq = attn_block_rows(g->b * g->h, g->tq, threads);
  g->nqb = (g->tq + g->bq - 1) / g->bq;
  /* Key blocks: a bq x bk score block should stay in the L2; sequences up
   * to 1.5 blocks long are not split. */
  int64_t kblocks = g->tk <= ATTN_BK_MAX * 3 / 2 ? 1 : (g->tk + ATTN_BK_MAX - 1) / ATTN_BK_MAX;
  g->bk = max64(1, round_up((g->tk + kblocks - 1) / kblocks, 16));
  /* Pad the score rows so a column walk (the transposed products) does not
   * hit the same cache sets every row. */
  g->sld = g->bk;
  if (g->sld % 256 == 0) g->sld += 16;
  if (key_mask) {
    float *bias = sdw_arena_alloc(ctx->scratch, (size_t)(g->b * g->tk + 1) * sizeof(float));
    if (!bias) return SDW_ERR_OUT_OF_MEMORY;
    const uint8_t *m = key_mask->data;
    for (int64_t i = 0; i < g->b * g->tk; i++)
      bias[i] = m[i] ? 0.0f : -INFINITY;
    g->mask_bias = bias;
  }
  return SDW_OK;
}

/* Keys a block of queries [i0, i0+rows) can see at all. */
static int64_t attn_key_end(const attn_geom *g, int64_t i0, int64_t rows) {
  return g->causal ? min64(g->tk, i0 + rows) : g->tk;
}

/* Keys query i can see in the key block [j0, j0+kn) (the causal limit). */
static int64_t attn_row_keys(const attn_geom *g, int64_t i, int64_t j0, int64_t kn) {
  return g->causal ? min64(max64(i + 1 - j0, 0), kn) : kn;
}

/* s[rows, kn] (leading dim sld) = scale * q_blk k_blk^T. */
static void attn_scores(const attn_geom *g, const float *qb, const float *kb, int64_t rows,
                        int64_t kn, float *s) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kn, (int)g->dh, g->scale, qb,
              (int)g->ld, kb, (int)g->ld, 0.0f, s, (int)g->sld);
}

/* Per-thread forward scratch: a score block, the unnormalised output rows
 * (bq x Dh), and the running row max and row sum. */
typedef struct attn_fwd_scratch {
  float *s, *acc, *m, *l;
} attn_fwd_scratch;

static size_t attn_fwd_scratch_floats(const attn_geom *g) {
  return (size_t)(g->bq * g->sld + round_up(g->bq * g->dh, 16) + 2 * round_up(g->bq, 16));
}

static attn_fwd_scratch attn_fwd_scratch_at(const attn_geom *g, float *base) {
  attn_fwd_scratch w = {.s = base};
  w.acc = w.s + g->bq * g->sld;
  w.m = w.acc + round_up(g->bq * g->dh, 16);
  w.l = w.m + round_up(g->bq, 16);
  return w;
}

/* One forward item: query rows [i0, i0+rows) of (batch bi, head hi). Key
 * blocks are folded in with the online softmax: when a block raises a row's
 * running max m, the row's sum and output so far are rescaled by
 * exp(m_old - m_new). */
static void attn_forward_block(const attn_geom *g, int64_t bi, int64_t hi, int64_t i0, float *outp,
                               float *lsep, attn_fwd_scratch w) {
  const int64_t rows = min64(g->bq, g->tq - i0), kend = attn_key_end(g, i0, rows);
  const int64_t dh = g->dh;
  const float *qb = g->q + (bi * g->tq + i0) * g->ld + hi * dh;
  const float *kb = g->k + bi * g->tk * g->ld + hi * dh;
  const float *vb = g->v + bi * g->tk * g->ld + hi * dh;
  float *ob = outp + (bi * g->tq + i0) * g->ld + hi * dh;
  float *lb = lsep ? lsep + (bi * g->h + hi) * g->tq + i0 : NULL;
  const float *bias = g->mask_bias ? g->mask_bias + bi * g->tk : NULL;
  for (int64_t r = 0; r < rows; r++)
    w.m[r] = -INFINITY, w.l[r] = 0.0f;
  memset(w.acc, 0, (size_t)(rows * dh) * sizeof(float));
  for (int64_t j0 = 0; j0 < kend; j0 += g->bk) {
    const int64_t kn = min64(g->bk, kend - j0);
    attn_scores(g, qb, kb + j0 * g->ld, rows, kn, w.s);
    for (int64_t r = 0; r < rows; r++) {
      float *sr = w.s + r * g->sld;
      const int64_t n = attn_row_keys(g, i0 + r, j0, kn);
      const float *br = bias ? bias + j0 : NULL;
      float bm = -INFINITY;
      if (n > 0) bm = br ? sdw_vexp_row_max_bias(sr, br, n) : sdw_vexp_row_max(sr, n);
      if (bm == -INFINITY) { /* nothing visible in this block */
        memset(sr, 0, (size_t)kn * sizeof(float));
        continue;
      }
      if (bm > w.m[r]) {
        if (w.l[r] > 0.0f) {
          const float alpha = sdw_vexp_scalar(w.m[r] - bm);
          w.l[r] *= alpha;
          sdw_vexp_row_scale(w.acc + r * dh, alpha, dh);
        }
        w.m[r] = bm;
      }
      w.l[r] += br ? sdw_vexp_row_exp_sum_bias(sr, br, w.m[r], sr, n)
                   : sdw_vexp_row_exp_sum(sr, w.m[r], sr, n);
      if (kn > n) memset(sr + n, 0, (size_t)(kn - n) * sizeof(float));
    }
    /* acc[rows,Dh] += P_blk V_blk */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)dh, (int)kn, 1.0f, w.s,
                (int)g->sld, vb + j0 * g->ld, (int)g->ld, 1.0f, w.acc, (int)dh);
  }
  for (int64_t r = 0; r < rows; r++) {
    const bool any = w.l[r] > 0.0f;
    const float inv = any ? 1.0f / w.l[r] : 0.0f;
    const float *ar = w.acc + r * dh;
    float *orow = ob + r * g->ld;
    for (int64_t d = 0; d < dh; d++)
      orow[d] = ar[d] * inv;
    if (lb) lb[r] = any ? w.m[r] + logf(w.l[r]) : -INFINITY;
  }
}

/* q[B,Tq,H,Dh], k[B,Tk,H,Dh], v[B,Tk,H,Dh], key_mask U8 [B,Tk] or NULL
 * -> out[B,Tq,H,Dh], lse[B,H,Tq] or NULL */
sdw_status sdw_cpu_attention_forward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                     const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                     float scale, sdw_tensor *out, sdw_tensor *lse) {
  attn_check_shapes(q, k, v, key_mask, out, lse);
  SDW_ASSERT(out != NULL);
  const size_t mark = sdw_arena_mark(ctx->scratch);
  attn_geom g;
  const int threads = ctx->num_threads > 1 ? ctx->num_threads : 1;
  sdw_status st = attn_geom_make(ctx, q, k, v, key_mask, causal, scale, threads, &g);
  const int64_t items = g.b * g.h * g.nqb;
  const int nt = items > 1 ? threads : 1;
  const size_t per_thread = attn_fwd_scratch_floats(&g);
  float *scratch = NULL;
  if (st == SDW_OK) {
    scratch = sdw_arena_alloc(ctx->scratch, (size_t)nt * per_thread * sizeof(float));
    if (!scratch) st = SDW_ERR_OUT_OF_MEMORY;
  }
  if (st == SDW_OK) {
    float *outp = out->data, *lsep = lse ? lse->data : NULL;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int64_t w = 0; w < items; w++) {
      attn_fwd_scratch ws =
          attn_fwd_scratch_at(&g, scratch + (size_t)omp_get_thread_num() * per_thread);
      const int64_t bh = w / g.nqb, qb = w % g.nqb;
      attn_forward_block(&g, bh / g.h, bh % g.h, qb * g.bq, outp, lsep, ws);
    }
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return st;
}

/* Where one backward item accumulates dK and dV: the gradient tensors
 * themselves (row stride H*Dh) or a thread's partials (row stride Dh). */
typedef struct attn_grad_target {
  float *dk, *dv; /* row 0 of this (batch, head); NULL = not wanted */
  int64_t ld;
} attn_grad_target;

/* One backward item: query rows [i0, i0+rows) of (batch bi, head hi), key
 * block by key block. p and dp are score blocks, dsum holds bq floats; dq is
 * the gradient tensor or NULL. */
static void attn_backward_block(const attn_geom *g, int64_t bi, int64_t hi, int64_t i0,
                                const float *outp, const float *lsep, const float *doutp, float *dq,
                                attn_grad_target t, float *p, float *dp, float *dsum) {
  const int64_t rows = min64(g->bq, g->tq - i0), kend = attn_key_end(g, i0, rows);
  if (kend == 0) return;
  const int64_t row0 = (bi * g->tq + i0) * g->ld + hi * g->dh;
  const int64_t key0 = bi * g->tk * g->ld + hi * g->dh;
  const float *qb = g->q + row0, *ob = outp + row0, *dob = doutp + row0;
  const float *lb = lsep + (bi * g->h + hi) * g->tq + i0;
  const float *bias = g->mask_bias ? g->mask_bias + bi * g->tk : NULL;
  const int ld = (int)g->ld, sld = (int)g->sld, dh = (int)g->dh;
  const bool need_ds = dq || t.dk;
  if (need_ds) /* rowsum(dO * O) = rowsum(P * dP) */
    for (int64_t r = 0; r < rows; r++)
      dsum[r] = sdw_vexp_row_dot(dob + r * g->ld, ob + r * g->ld, g->dh);

  for (int64_t j0 = 0; j0 < kend; j0 += g->bk) {
    const int64_t kn = min64(g->bk, kend - j0);
    const float *kb = g->k + key0 + j0 * g->ld, *vb = g->v + key0 + j0 * g->ld;
    attn_scores(g, qb, kb, rows, kn, p);
    for (int64_t r = 0; r < rows; r++) {
      float *pr = p + r * g->sld;
      const int64_t n = lb[r] == -INFINITY ? 0 : attn_row_keys(g, i0 + r, j0, kn);
      if (n > 0) {
        if (bias)
          sdw_vexp_row_exp_sum_bias(pr, bias + j0, lb[r], pr, n);
        else
          sdw_vexp_row_exp_sum(pr, lb[r], pr, n);
      }
      if (kn > n) memset(pr + n, 0, (size_t)(kn - n) * sizeof(float));
    }
    if (t.dv) /* dV_blk[kn,Dh] += P^T dO */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kn, dh, (int)rows, 1.0f, p, sld,
                  dob, ld, 1.0f, t.dv + j0 * t.ld, (int)t.ld);
    if (!need_ds) continue;
    /* dP[rows,kn] = dO V_blk^T, then dS in place. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kn, dh, 1.0f, dob, ld, vb,
                ld, 0.0f, dp, sld);
    for (int64_t r = 0; r < rows; r++)
      sdw_vexp_row_softmax_grad(p + r * g->sld, dp + r * g->sld, dsum[r], g->scale, kn);
    if (dq) /* dQ_blk[rows,Dh] += dS K_blk */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, dh, (int)kn, 1.0f, dp, sld,
                  kb, ld, 1.0f, dq + row0, ld);
    if (t.dk) /* dK_blk[kn,Dh] += dS^T Q_blk */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kn, dh, (int)rows, 1.0f, dp, sld,
                  qb, ld, 1.0f, t.dk + j0 * t.ld, (int)t.ld);
  }
}

/* Given dout[B,Tq,H,Dh] (and the forward's inputs, out and lse[B,H,Tq]):
 * dq[B,Tq,H,Dh] += ..., dk[B,Tk,H,Dh] += ..., dv[B,Tk,H,Dh] += ... */
sdw_status sdw_cpu_attention_backward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                      const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                      float scale, const sdw_tensor *out, const sdw_tensor *lse,
                                      const sdw_tensor *dout, sdw_tensor *dq, sdw_tensor *dk,
                                      sdw_tensor *dv) {
  attn_check_shapes(q, k, v, key_mask, out, lse);
  SDW_ASSERT(out != NULL && lse != NULL && dout != NULL);
  SDW_ASSERT(dout->dtype == SDW_F32 && sdw_tensor_same_shape(dout, q));
  if (dq) SDW_ASSERT(dq->dtype == SDW_F32 && sdw_tensor_same_shape(dq, q));
  if (dk) SDW_ASSERT(dk->dtype == SDW_F32 && sdw_tensor_same_shape(dk, k));
  if (dv) SDW_ASSERT(dv->dtype == SDW_F32 && sdw_tensor_same_shape(dv, v));
  if (!dq && !dk && !dv) return SDW_OK;

  const size_t mark = sdw_arena_mark(ctx->scratch);
  attn_geom g;
  int nt = ctx->num_threads > 1 ? ctx->num_threads : 1;
  sdw_status st = attn_geom_make(ctx, q, k, v, key_mask, causal, scale, nt, &g);
  const int64_t pairs = g.b * g.h;
  /* Whole (batch, head) pairs per thread when they share out evenly;
   * otherwise the query blocks of each pair, with dK/dV partials. */
  const bool per_pair = nt == 1 || (pairs >= nt && (pairs % nt == 0 || pairs >= 4 * nt));
  if (!per_pair && g.nqb == 1) nt = 1; /* nothing to share */
  const bool partials = !per_pair && nt > 1;
  const size_t block = (size_t)(g.bq * g.sld);
  const size_t part = partials ? (size_t)(g.tk * g.dh) : 0;
  const size_t dsum_floats = (size_t)round_up(g.bq, 16);
  const size_t per_thread = 2 * block + 2 * part + dsum_floats;
  float *scratch = NULL;
  if (st == SDW_OK) {
    scratch = sdw_arena_alloc(ctx->scratch, (size_t)nt * per_thread * sizeof(float));
    if (!scratch) st = SDW_ERR_OUT_OF_MEMORY;
  }
  if (st != SDW_OK) {
    sdw_arena_reset_to(ctx->scratch, mark);
    return st;
  }
  const float *outp = out->data, *lsep = lse->data, *doutp = dout->data;
  float *dqp = dq ? dq->data : NULL, *dkp = dk ? dk->data : NULL, *dvp = dv ? dv->data : NULL;

  if (!partials) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int64_t pr = 0; pr < pairs; pr++) {
      float *p = scratch + (size_t)omp_get_thread_num() * per_thread, *dp = p + block;
      const int64_t bi = pr / g.h, hi = pr % g.h, key0 = bi * g.tk * g.ld + hi * g.dh;
      attn_grad_target t = {dkp ? dkp + key0 : NULL, dvp ? dvp + key0 : NULL, g.ld};
      for (int64_t qb = 0; qb < g.nqb; qb++)
        attn_backward_block(&g, bi, hi, qb * g.bq, outp, lsep, doutp, dqp, t, p, dp, p + 2 * block);
    }
  } else {
    for (int64_t pr = 0; pr < pairs; pr++) {
      const int64_t bi = pr / g.h, hi = pr % g.h, key0 = bi * g.tk * g.ld + hi * g.dh;
#pragma omp parallel num_threads(nt)
      {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        float *p = scratch + (size_t)tid * per_thread, *dp = p + block;
        attn_grad_target t = {dkp ? dp + block : NULL, dvp ? dp + block + part : NULL, g.dh};
        if (t.dk) memset(t.dk, 0, part * sizeof(float));
        if (t.dv) memset(t.dv, 0, part * sizeof(float));
#pragma omp for schedule(static) /* fixed block-to-thread map: deterministic partial sums */
        for (int64_t qb = 0; qb < g.nqb; qb++)
          attn_backward_block(&g, bi, hi, qb * g.bq, outp, lsep, doutp, dqp, t, p, dp,
                              p + 2 * block + 2 * part);
          /* (implicit barrier) then sum the partials, threads owning key rows. */
#pragma omp for schedule(static)
        for (int64_t j = 0; j < g.tk; j++) {
          for (int th = 0; th < team; th++) {
            const float *src = scratch + (size_t)th * per_thread + 2 * block + (size_t)(j * g.dh);
            if (dkp) {
              float *dst = dkp + key0 + j * g.ld;
              for (int64_t d = 0; d < g.dh; d++)
                dst[d] += src[d];
            }
            if (dvp) {
              float *dst = dvp + key0 + j * g.ld;
              for (int64_t d = 0; d < g.dh; d++)
                dst[d] += src[part + d];
            }
          }
        }
      }
    }
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}
