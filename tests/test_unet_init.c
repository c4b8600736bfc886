/* core/train/unet_init: the random initialisation of a seed-topology UNet
 * against PyTorch's rules as SEED.md 1.5 states them (kaiming_uniform with
 * a = sqrt 5, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases from the
 * weight's fan_in, norms 1/0) and the two lists of zero-initialised modules:
 * the seed's (conv2, proj_out, to_out, mlp.2, conv_out) and CompVis LDM's
 * zero_module calls (conv2, proj_out, conv_out).
 *
 * Tolerance: a uniform draw's sample standard deviation over n values is
 * within 5 * bound / sqrt(3) / sqrt(2n) of bound / sqrt(3) (five standard
 * errors; only tensors of at least 256 values are checked). */
#include <math.h>
#include <string.h>

#include "core/train/unet_init.h"
#include "tests/test.h"

static bool name_has(const char *name, const char *part) { return strstr(name, part) != NULL; }

static int64_t fan_in_of(const sdw_tensor *w) {
  int64_t f = w->shape[1];
  for (int d = 2; d < w->ndim; d++)
    f *= w->shape[d];
  return f;
}

SDW_TEST(unet_init_seed_and_ldm_zero_modules) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  sdw_unet_config uc;
  CHECK_OK(sdw_unet_preset("seed-tiny", &uc));
  sdw_unet a, b;
  CHECK_OK(sdw_unet_create(&a, ctx, &uc));
  CHECK_OK(sdw_unet_create(&b, ctx, &uc));
  CHECK_OK(sdw_unet_init_random(&a, 7));
  CHECK_OK(sdw_unet_init_random_with(&b, 7, SDW_ZERO_INIT_LDM));
  int seed_only = 0, checked_std = 0;
  for (int i = 0; i < a.params.count; i++) {
    const sdw_param *pa = &a.params.items[i], *pb = &b.params.items[i];
    const int64_t n = sdw_tensor_numel(&pa->value);
    const float *va = a.params.flat + pa->offset, *vb = b.params.flat + pb->offset;
    const char *name = pa->name;
    const bool both_zero = name_has(name, ".conv2.") || name_has(name, ".proj_out.") ||
                           strncmp(name, "conv_out.", 9) == 0;
    const bool seed_zero = both_zero || name_has(name, ".to_out.") || name_has(name, ".mlp.2.");
    double max_a = 0, max_b = 0, ss = 0;
    for (int64_t k = 0; k < n; k++) {
      max_a = fmax(max_a, fabs(va[k]));
      max_b = fmax(max_b, fabs(vb[k]));
      ss += (double)vb[k] * vb[k];
    }
    if (seed_zero) CHECK_MSG(max_a == 0, "%s: not zero in the seed's init", name);
    if (both_zero) CHECK_MSG(max_b == 0, "%s: not zero in the LDM init", name);
    if (!seed_zero) /* the same draws whichever list applies */
      CHECK_MSG(memcmp(va, vb, (size_t)n * sizeof *va) == 0, "%s differs between the styles", name);
    if (seed_zero && !both_zero) seed_only++;
    if (both_zero) continue;
    /* the LDM init's random tensors (also the seed's where it draws) */
    const sdw_param *w = pb;
    char wname[SDW_PARAM_NAME_MAX];
    if (pb->value.ndim == 1 && strlen(name) > 4 && strcmp(name + strlen(name) - 4, "bias") == 0) {
      snprintf(wname, sizeof wname, "%.*sweight", (int)(strlen(name) - 4), name);
      w = sdw_params_find(&b.params, wname);
    }
    if (!w || w->value.ndim < 2) { /* a norm: weight 1, bias 0 */
      const bool is_bias = strcmp(name + strlen(name) - 4, "bias") == 0;
      for (int64_t k = 0; k < n; k++)
        if (vb[k] != (is_bias ? 0.0f : 1.0f)) {
          CHECK_MSG(false, "%s[%lld] = %g: a norm starts at %d", name, (long long)k, vb[k],
                    is_bias ? 0 : 1);
          break;
        }
      continue;
    }
    const double bound = 1.0 / sqrt((double)fan_in_of(&w->value));
    CHECK_MSG(max_b <= bound, "%s: |w| %g above the kaiming bound %g", name, max_b, bound);
    if (n >= 256) {
      const double sd = sqrt(ss / (double)n), want = bound / sqrt(3.0);
      CHECK_MSG(fabs(sd - want) <= 5.0 * want / sqrt(2.0 * (double)n), "%s: std %g, want %g", name,
                sd, want);
      checked_std++;
    }
  }
  CHECK(seed_only > 0 && checked_std > 10); /* both lists and the draws were exercised */
  sdw_zero_init z;
  CHECK(sdw_zero_init_from_name("ldm", &z) && z == SDW_ZERO_INIT_LDM);
  CHECK(sdw_zero_init_from_name("seed", &z) && z == SDW_ZERO_INIT_SEED);
  CHECK(!sdw_zero_init_from_name("none", &z));
  sdw_unet_free(&a);
  sdw_unet_free(&b);
  sdw_ctx_destroy(ctx);
}
