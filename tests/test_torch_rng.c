/* core/base/torch_rng: torch.Generator("cpu").manual_seed + torch.randn
 * against values produced by real torch (tests/data/goldens/torch_rng,
 * made by tools/gen_scheduler_goldens.py with Debian's torch 1.13.1; README
 * there). Every comparison is exact bit equality (memcmp): the point of this
 * generator is to reproduce torch's noise bit for bit, so any tolerance would
 * hide a wrong rounding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/safetensors.h"
#include "core/base/torch_rng.h"
#include "tests/test.h"

static sdw_safetensors *open_rng_golden(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/torch_rng/io.safetensors", sdw_test_data_dir());
  sdw_safetensors *st = NULL;
  sdw_status s = sdw_safetensors_open(path, &st);
  if (s != SDW_OK) sdw_test_fail(__FILE__, __LINE__, "open %s: %s", path, sdw_last_error());
  return st;
}

/* Counts elements whose bits differ and their largest distance in ulps. */
static int64_t count_bit_mismatches(const float *got, const void *want, int64_t n,
                                    int64_t *max_ulp) {
  int64_t bad = 0;
  *max_ulp = 0;
  for (int64_t i = 0; i < n; i++) {
    int32_t a, b;
    memcpy(&a, &got[i], 4);
    memcpy(&b, (const char *)want + 4 * i, 4);
    if (a != b) {
      bad++;
      int64_t d = (int64_t)a - (int64_t)b;
      if (d < 0) d = -d;
      if (d > *max_ulp) *max_ulp = d;
    }
  }
  return bad;
}

/* Draws from g into a guarded buffer and compares with tensor `name`. */
static void check_draw(sdw_torch_generator *g, const sdw_safetensors *st, const char *name) {
  const sdw_safetensors_entry *e = NULL;
  CHECK_OK(sdw_safetensors_get(st, name, &e));
  if (!e) return;
  REQUIRE(e->dtype == SDW_F32);
  float *got = sdw_test_alloc_guarded((size_t)e->numel, name);
  sdw_torch_randn(g, got, e->numel);
  int64_t max_ulp = 0;
  int64_t bad = count_bit_mismatches(got, e->data, e->numel, &max_ulp);
  CHECK_MSG(bad == 0 && memcmp(got, e->data, e->nbytes) == 0,
            "%s: %lld of %lld values differ from torch (max %lld ulp)", name, (long long)bad,
            (long long)e->numel, (long long)max_ulp);
  sdw_test_free_guarded(got);
}

static const char *kernel_tag(sdw_torch_normal_kernel k) {
  return k == SDW_TORCH_NORMAL_AVX2 ? "avx2" : "scalar";
}

/* The first draws of MT19937 seeded with 5489 are the generator's published
 * reference values (Matsumoto & Nishimura's mt19937ar output); torch's
 * engine is plain MT19937. */
SDW_TEST(torch_rng_mt19937_reference_values) {
  sdw_torch_generator g;
  sdw_torch_generator_seed(&g, 5489, SDW_TORCH_NORMAL_AVX2);
  CHECK(sdw_torch_random(&g) == 3499211612u);
  CHECK(sdw_torch_random(&g) == 581869302u);
  CHECK(sdw_torch_random(&g) == 3890346734u);
  CHECK(sdw_torch_random(&g) == 3586334585u);
  /* The 10000th output of std::mt19937 with its default seed (C++11
   * [rand.predef]). */
  sdw_torch_generator_seed(&g, 5489, SDW_TORCH_NORMAL_AVX2);
  uint32_t v = 0;
  for (int i = 0; i < 10000; i++)
    v = sdw_torch_random(&g);
  CHECK(v == 4123659995u);
  /* Only the low 32 bits of the seed reach the engine (init_with_uint32). */
  sdw_torch_generator a, b;
  sdw_torch_generator_seed(&a, UINT64_C(0x100000007), SDW_TORCH_NORMAL_AVX2);
  sdw_torch_generator_seed(&b, 7, SDW_TORCH_NORMAL_AVX2);
  CHECK(sdw_torch_random64(&a) == sdw_torch_random64(&b));
}

SDW_TEST(torch_rng_randn_matches_torch_per_seed_and_shape) {
  sdw_safetensors *st = open_rng_golden();
  REQUIRE(st);
  const uint64_t seeds[] = {0, 42, UINT64_C(4294967295)};
  const char *avx2_shapes[] = {"1x4x64x64", "2x4x8x8", "7", "17"};
  const char *scalar_shapes[] = {"1x4x16x16", "2x4x8x8", "7", "17"};
  for (int k = 0; k < 2; k++) {
    sdw_torch_normal_kernel kernel = k == 0 ? SDW_TORCH_NORMAL_AVX2 : SDW_TORCH_NORMAL_SCALAR;
    const char **shapes = k == 0 ? avx2_shapes : scalar_shapes;
    for (int s = 0; s < 3; s++) {
      for (int j = 0; j < 4; j++) {
        char name[128];
        snprintf(name, sizeof name, "randn.%s.s%llu.%s", kernel_tag(kernel),
                 (unsigned long long)seeds[s], shapes[j]);
        sdw_torch_generator g;
        sdw_torch_generator_seed(&g, seeds[s], kernel);
        check_draw(&g, st, name);
      }
    }
  }
  sdw_safetensors_close(st);
}

/* One generator, successive calls: the state advances across calls and the
 * cached Box-Muller value of the numel < 16 path carries over. */
SDW_TEST(torch_rng_successive_calls_advance_like_torch) {
  sdw_safetensors *st = open_rng_golden();
  REQUIRE(st);
  for (int k = 0; k < 2; k++) {
    sdw_torch_normal_kernel kernel = k == 0 ? SDW_TORCH_NORMAL_AVX2 : SDW_TORCH_NORMAL_SCALAR;
    sdw_torch_generator g;
    sdw_torch_generator_seed(&g, 1234, kernel);
    for (int call = 0; call < 8; call++) {
      char name[64];
      snprintf(name, sizeof name, "seq.%s.s1234.k%d", kernel_tag(kernel), call);
      check_draw(&g, st, name);
    }
  }
  sdw_safetensors_close(st);
}

/* The seed's src/inference.py noise: a fresh generator per batch seeded with
 * --seed + the batch's first prompt index. */
SDW_TEST(torch_rng_reproduces_seed_inference_noise) {
  sdw_safetensors *st = open_rng_golden();
  REQUIRE(st);
  for (int i = 0; i <= 2; i += 2) {
    char name[64];
    snprintf(name, sizeof name, "inference.seed42.i%d", i);
    sdw_torch_generator g;
    sdw_torch_generator_seed(&g, 42 + (uint64_t)i, SDW_TORCH_NORMAL_AVX2);
    check_draw(&g, st, name);
  }
  /* torch.rand: the float uniform. */
  const sdw_safetensors_entry *e = NULL;
  CHECK_OK(sdw_safetensors_get(st, "rand.s0.5", &e));
  if (e) {
    sdw_torch_generator g;
    sdw_torch_generator_seed(&g, 0, SDW_TORCH_NORMAL_AVX2);
    float u[5];
    for (int i = 0; i < 5; i++)
      u[i] = sdw_torch_uniform_f32(&g);
    CHECK(e->numel == 5 && memcmp(u, e->data, sizeof u) == 0);
  }
  sdw_safetensors_close(st);
}

/* Re-seeding resets the stream and drops the cached normal value. */
SDW_TEST(torch_rng_reseed_resets_the_stream) {
  sdw_torch_generator g;
  float a[7], b[7], c[3];
  sdw_torch_generator_seed(&g, 99, SDW_TORCH_NORMAL_AVX2);
  sdw_torch_randn(&g, a, 7); /* leaves a cached value behind (7 is odd) */
  sdw_torch_generator_seed(&g, 99, SDW_TORCH_NORMAL_AVX2);
  sdw_torch_randn(&g, b, 7);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(g.has_next_normal);  /* 7 values = 4 Box-Muller pairs, the 8th value waits */
  sdw_torch_randn(&g, c, 3); /* the cached value, then one more pair */
  CHECK(!g.has_next_normal);
  sdw_torch_generator before = g;
  sdw_torch_randn(&g, c, 0); /* n = 0 draws nothing */
  CHECK(memcmp(&before, &g, sizeof g) == 0);
}
