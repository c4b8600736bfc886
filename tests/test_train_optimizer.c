/* The optimizer step (core/train/optimizer.h) on a small parameter set:
 * clipping, AdamW and EMA against a plain double reference of torch's
 * formulas, the weight-decay exclusion of norms and biases, and the
 * NaN/Inf skip. The golden comparison with PyTorch (3 steps of the seed's
 * UNet) is in tests/test_train_step.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/params.h"
#include "core/train/optimizer.h"
#include "kernels/ops.h"
#include "tests/test.h"

typedef struct small_set {
  sdw_ctx *ctx;
  sdw_params p, g; /* parameters and a gradient buffer of the same layout */
} small_set;

/* A linear [5, 3] + bias [5], a norm scale [3], a conv [2, 3, 1, 1]. */
static void declare(sdw_params *p) {
  sdw_params_take(p, 2, (int64_t[]){5, 3}, "lin.weight");
  sdw_params_take(p, 1, (int64_t[]){5}, "lin.bias");
  sdw_params_take(p, 1, (int64_t[]){3}, "norm.weight");
  sdw_params_take(p, 4, (int64_t[]){2, 3, 1, 1}, "conv.weight");
}

static bool small_open(small_set *s, uint64_t seed) {
  memset(s, 0, sizeof *s);
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &s->ctx));
  if (!s->ctx) return false;
  sdw_params *sets[2] = {&s->p, &s->g};
  for (int k = 0; k < 2; k++) {
    sdw_params_init(sets[k], s->ctx);
    declare(sets[k]);
    CHECK_OK(sdw_params_allocate(sets[k]));
    declare(sets[k]);
    CHECK_OK(sdw_params_finish(sets[k]));
  }
  sdw_test_rng rng = sdw_test_rng_make(seed);
  for (int i = 0; i < s->p.count; i++) {
    sdw_tensor *v = &s->p.items[i].value, *gv = &s->g.items[i].value;
    sdw_test_fill_normal(&rng, v->data, (size_t)sdw_tensor_numel(v), 0.5f);
    sdw_test_fill_normal(&rng, gv->data, (size_t)sdw_tensor_numel(gv), 3.0f);
  }
  return true;
}

static void small_close(small_set *s) {
  sdw_params_free(&s->p);
  sdw_params_free(&s->g);
  sdw_ctx_destroy(s->ctx);
}

/* torch.optim.AdamW + clip_grad_norm_ + the seed's EMA, in double. */
typedef struct ref_state {
  double p[64], m[64], v[64], e[64];
} ref_state;

static void ref_step(ref_state *r, const float *g, const size_t *idx, int n, double lr, double wd,
                     const bool *decay, double max_norm, int step, double *norm_out) {
  double ss = 0.0;
  for (int k = 0; k < n; k++)
    ss += (double)g[idx[k]] * g[idx[k]];
  const double norm = sqrt(ss), coef = fmin(1.0, max_norm / (norm + 1e-6));
  *norm_out = norm;
  const double bc1 = 1.0 - pow(0.9, step), bc2 = 1.0 - pow(0.999, step);
  const double d = fmin(0.9999, (1.0 + step) / (10.0 + step));
  for (int k = 0; k < n; k++) {
    const double gi = g[idx[k]] * coef;
    if (decay[k]) r->p[k] *= 1.0 - lr * wd;
    r->m[k] = 0.9 * r->m[k] + 0.1 * gi;
    r->v[k] = 0.999 * r->v[k] + 0.001 * gi * gi;
    r->p[k] -= (lr / bc1) * r->m[k] / (sqrt(r->v[k]) / sqrt(bc2) + 1e-8);
    r->e[k] = d * r->e[k] + (1.0 - d) * r->p[k];
  }
}

/* Three steps with clipping active (|g| ~ 3 sqrt(32) >> 1) and with
 * norms/biases excluded from decay; every value within 1e-5 relative of
 * the double reference (float32 state: each step rounds p, m, v and the
 * EMA once or twice; the AdamW op itself is tested to ~1 ulp in
 * tests/test_optim.c). */
SDW_TEST(train_optimizer_matches_double_reference) {
  for (int excl = 0; excl < 2; excl++) {
    small_set s;
    REQUIRE(small_open(&s, 31 + (uint64_t)excl));
    sdw_optimizer_config oc = sdw_optimizer_config_seed();
    oc.decay_norms_and_biases = excl == 0;
    oc.weight_decay = 0.1; /* large enough to see */
    sdw_optimizer o;
    CHECK_OK(sdw_optimizer_init(&o, s.ctx, &s.p, &oc));
    /* the elements (offsets into the flat buffers) and their decay flags */
    size_t idx[64];
    bool decay[64];
    int n = 0;
    ref_state r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < s.p.count; i++) {
      const sdw_param *p = &s.p.items[i];
      for (int64_t k = 0; k < sdw_tensor_numel(&p->value); k++) {
        idx[n] = p->offset + (size_t)k;
        decay[n] = excl == 0 || p->value.ndim >= 2;
        r.p[n] = s.p.flat[idx[n]];
        r.e[n] = r.p[n];
        n++;
      }
    }
    CHECK(o.decay[0] && o.decay[1] == (excl == 0) && o.decay[2] == (excl == 0) && o.decay[3]);
    for (int step = 1; step <= 3; step++) {
      const double lr = 1e-2 * step;
      double norm = 0.0;
      ref_step(&r, s.g.flat, idx, n, lr, 0.1, decay, 1.0, step, &norm);
      sdw_optimizer_report rep;
      CHECK_OK(sdw_optimizer_step(&o, &s.p, s.g.flat, lr, 0.5, &rep));
      CHECK(!rep.skipped && rep.lr == lr && o.step == step);
      CHECK(fabs(rep.grad_norm - norm) <= 1e-12 * norm);
      CHECK(fabs(rep.clip_coef - 1.0 / (norm + 1e-6)) <= 1e-15);
      CHECK(rep.ema_decay == (1.0 + step) / (10.0 + step));
      double ep = 0, em = 0, ev = 0, ee = 0;
      for (int k = 0; k < n; k++) {
        ep = fmax(ep, fabs(s.p.flat[idx[k]] - r.p[k]) / fabs(r.p[k]));
        em = fmax(em, fabs(o.m[idx[k]] - r.m[k]) / fabs(r.m[k]));
        ev = fmax(ev, fabs(o.v[idx[k]] - r.v[k]) / fabs(r.v[k]));
        ee = fmax(ee, fabs(o.ema[idx[k]] - r.e[k]) / fabs(r.e[k]));
      }
      CHECK_MSG(ep <= 1e-5 && em <= 1e-5 && ev <= 1e-5 && ee <= 1e-5,
                "exclude %d step %d: p %.3g m %.3g v %.3g ema %.3g", excl, step, ep, em, ev, ee);
      /* the gradient buffer is left alone (clipping is a scale inside AdamW) */
    }
    /* padding between parameters stays zero in every buffer */
    for (size_t i = 0; i < s.p.total; i++) {
      bool inside = false;
      for (int k = 0; k < n && !inside; k++)
        inside = idx[k] == i;
      if (!inside)
        CHECK(s.p.flat[i] == 0.0f && o.m[i] == 0.0f && o.v[i] == 0.0f && o.ema[i] == 0.0f);
    }
    sdw_optimizer_free(&o);
    small_close(&s);
  }
}

/* A zero gradient with clipping off: only the decoupled weight decay acts,
 * exactly (1 - lr wd) on parameters of rank >= 2 and nothing on the norm
 * scales and biases excluded from it; the EMA decay is capped at
 * ema_decay. */
SDW_TEST(train_optimizer_decay_only_with_zero_gradient) {
  small_set s;
  REQUIRE(small_open(&s, 7));
  memset(s.g.flat, 0, s.g.total * sizeof(float));
  float *before = malloc(s.p.total * sizeof *before);
  memcpy(before, s.p.flat, s.p.total * sizeof *before);
  sdw_optimizer_config oc = sdw_optimizer_config_seed();
  oc.decay_norms_and_biases = false;
  oc.weight_decay = 0.5;
  oc.max_grad_norm = 0.0; /* off */
  oc.ema_decay = 0.1;     /* below (1+n)/(10+n) = 2/11 already: the cap applies */
  sdw_optimizer o;
  CHECK_OK(sdw_optimizer_init(&o, s.ctx, &s.p, &oc));
  sdw_optimizer_report rep;
  CHECK_OK(sdw_optimizer_step(&o, &s.p, s.g.flat, 0.1, 1.0, &rep));
  CHECK(rep.clip_coef == 1.0 && rep.grad_norm == 0.0 && rep.ema_decay == 0.1);
  const float keep = (float)(1.0 - 0.1 * 0.5);
  for (int i = 0; i < s.p.count; i++) {
    const sdw_param *p = &s.p.items[i];
    const float *now = p->value.data, *old = before + p->offset;
    for (int64_t k = 0; k < sdw_tensor_numel(&p->value); k++) {
      /* rank >= 2 decays by exactly (1 - lr wd) (m = 0 adds nothing), the rest stays */
      const float want = p->value.ndim >= 2 ? old[k] * keep : old[k];
      CHECK_MSG(now[k] == want, "%s[%lld]", p->name, (long long)k);
    }
  }
  sdw_optimizer_free(&o);
  free(before);
  small_close(&s);
}

/* A NaN or Inf in the loss or any gradient skips the whole update: the
 * parameters, moments, EMA and step counters stay as they were. */
SDW_TEST(train_optimizer_skips_non_finite) {
  small_set s;
  REQUIRE(small_open(&s, 9));
  sdw_optimizer_config oc = sdw_optimizer_config_seed();
  sdw_optimizer o;
  CHECK_OK(sdw_optimizer_init(&o, s.ctx, &s.p, &oc));
  sdw_optimizer_report rep;
  CHECK_OK(sdw_optimizer_step(&o, &s.p, s.g.flat, 1e-3, 1.0, &rep)); /* one good step */
  const size_t bytes = s.p.total * sizeof(float);
  float *p0 = malloc(bytes), *m0 = malloc(bytes), *v0 = malloc(bytes), *e0 = malloc(bytes);
  memcpy(p0, s.p.flat, bytes);
  memcpy(m0, o.m, bytes);
  memcpy(v0, o.v, bytes);
  memcpy(e0, o.ema, bytes);
  const size_t victim = s.p.items[2].offset + 1;
  const float good = s.g.flat[victim];
  const struct {
    float g;
    double loss;
  } cases[] = {{NAN, 1.0}, {INFINITY, 1.0}, {-INFINITY, 1.0}, {0.0f, NAN}, {0.0f, INFINITY}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    s.g.flat[victim] = cases[c].g == 0.0f ? good : cases[c].g;
    CHECK_OK(sdw_optimizer_step(&o, &s.p, s.g.flat, 1e-3, cases[c].loss, &rep));
    CHECK_MSG(rep.skipped, "case %zu not skipped", c);
    CHECK(memcmp(p0, s.p.flat, bytes) == 0 && memcmp(m0, o.m, bytes) == 0 &&
          memcmp(v0, o.v, bytes) == 0 && memcmp(e0, o.ema, bytes) == 0);
    CHECK(o.step == 1 && o.ema_updates == 1);
  }
  s.g.flat[victim] = good;
  CHECK_OK(sdw_optimizer_step(&o, &s.p, s.g.flat, 1e-3, 1.0, &rep));
  CHECK(!rep.skipped && o.step == 2 && o.ema_updates == 2);
  /* bad hyper-parameters */
  sdw_optimizer o2;
  oc.beta1 = 1.0;
  CHECK(sdw_optimizer_init(&o2, s.ctx, &s.p, &oc) == SDW_ERR_INVALID_ARGUMENT);
  free(p0);
  free(m0);
  free(v0);
  free(e0);
  sdw_optimizer_free(&o);
  small_close(&s);
}
