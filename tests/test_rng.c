/* core/base/philox.h + rng: Philox4x32-10 against Random123's known-answer
 * vectors (kat_vectors, the three "philox4x32 10" lines), the documented
 * stream mapping, offset independence, the float conversions and Box-Muller
 * against double-precision formulas, and distribution statistics with stated
 * tolerances. Every stream is seeded, so no test can flake. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/base/rng.h"
#include "tests/test.h"

#define TWO_PI 6.283185307179586

SDW_TEST(philox_known_answers) {
  /* Random123 1.14 examples/kat_vectors: counter[4] key[2] -> out[4]. */
  static const struct {
    uint32_t ctr[4], key[2], want[4];
  } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
    uint32_t out[4];
    sdw_philox4x32_10(kat[i].ctr, kat[i].key, out);
    CHECK_MSG(memcmp(out, kat[i].want, sizeof out) == 0, "vector %zu: %08x %08x %08x %08x", i,
              out[0], out[1], out[2], out[3]);
  }
}

/* The mapping written in philox.h: element i of (seed, subsequence) is lane
 * i % 4 of Philox(counter {lo(i/4), hi(i/4), lo(sub), hi(sub)}, key {lo(seed),
 * hi(seed)}); checked where the high words matter. */
SDW_TEST(rng_stream_mapping) {
  static const struct {
    uint64_t seed, sub, index;
  } at[] = {
      {0, 0, 0},
      {42, 0, 7},
      {0x0123456789abcdefull, 0xfedcba9876543210ull, 3},
      {1, 5, (UINT64_C(1) << 34) + 6}, /* block >= 2^32: the counter's second word */
      {UINT64_MAX, UINT64_MAX, UINT64_MAX - 1},
  };
  for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
    uint64_t block = at[k].index / 4;
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)at[k].sub,
                       (uint32_t)(at[k].sub >> 32)};
    uint32_t key[2] = {(uint32_t)at[k].seed, (uint32_t)(at[k].seed >> 32)};
    uint32_t x[4];
    sdw_philox4x32_10(ctr, key, x);
    uint32_t got;
    sdw_rng_fill_u32(&got, 1, at[k].seed, at[k].sub, at[k].index);
    CHECK_MSG(got == x[at[k].index % 4], "case %zu: %08x != %08x", k, got, x[at[k].index % 4]);
    /* uniform = (x >> 8) * 2^-24, exactly */
    float u;
    sdw_rng_fill_uniform(&u, 1, at[k].seed, at[k].sub, at[k].index);
    CHECK((double)u == (double)(x[at[k].index % 4] >> 8) / 16777216.0);
  }
  /* The all-zero stream starts with the first KAT output. */
  uint32_t first[4];
  sdw_rng_fill_u32(first, 4, 0, 0, 0);
  CHECK(first[0] == 0x6627e8d5 && first[3] == 0x9b00dbd8);
}

SDW_TEST(rng_offset_independence) {
  enum { N = 1000 };
  float all[N], part[N];
  uint32_t all_u[N], part_u[N];
  sdw_rng_fill_normal(all, N, 1234, 7, 0);
  sdw_rng_fill_normal(part, 500, 1234, 7, 500);
  CHECK(memcmp(part, all + 500, 500 * sizeof(float)) == 0);
  /* every start and length across block boundaries */
  for (uint64_t off = 0; off < 12; off++) {
    for (size_t len = 1; len < 11; len++) {
      float buf[16];
      uint32_t ubuf[16];
      sdw_rng_fill_normal(buf, len, 1234, 7, off);
      CHECK_MSG(memcmp(buf, all + off, len * sizeof(float)) == 0, "normal off %llu len %zu",
                (unsigned long long)off, len);
      sdw_rng_fill_uniform(buf, len, 99, 1, off);
      sdw_rng_fill_uniform(part, off + len, 99, 1, 0);
      CHECK(memcmp(buf, part + off, len * sizeof(float)) == 0);
      sdw_rng_fill_u32(ubuf, len, 99, 1, off);
      sdw_rng_fill_u32(part_u, off + len, 99, 1, 0);
      CHECK(memcmp(ubuf, part_u + off, len * sizeof(uint32_t)) == 0);
    }
  }
  /* the stateful form: 300 then 700 draws equal one fill of 1000 */
  sdw_rng rng = sdw_rng_make(1234, 7);
  sdw_rng_normal(&rng, part, 300);
  sdw_rng_normal(&rng, part + 300, 700);
  CHECK(memcmp(part, all, sizeof all) == 0 && rng.offset == N);
  /* determinism and independence of seeds and subsequences */
  sdw_rng_fill_u32(all_u, N, 5, 0, 0);
  sdw_rng_fill_u32(part_u, N, 5, 0, 0);
  CHECK(memcmp(all_u, part_u, sizeof all_u) == 0);
  int same_seed = 0, same_sub = 0;
  sdw_rng_fill_u32(part_u, N, 6, 0, 0);
  for (int i = 0; i < N; i++)
    same_seed += all_u[i] == part_u[i];
  sdw_rng_fill_u32(part_u, N, 5, 1, 0);
  for (int i = 0; i < N; i++)
    same_sub += all_u[i] == part_u[i];
  /* two independent u32 streams agree at a given index with p = 2^-32 */
  CHECK(same_seed <= 1 && same_sub <= 1);
}

/* The OpenMP path (large fills) gives the same bits as block-by-block serial
 * evaluation of the header's functions. */
SDW_TEST(rng_parallel_fill_matches_serial) {
  enum { N = 200003 };
  float *got = sdw_test_alloc_guarded(N, "normals");
  sdw_rng_fill_normal(got, N, 77, 3, 2);
  int bad = 0;
  for (uint64_t i = 0; i < N; i++) {
    uint64_t index = i + 2;
    float z[4];
    sdw_philox_normal4(77, 3, index / 4, z);
    bad += memcmp(&z[index % 4], &got[i], sizeof(float)) != 0;
  }
  CHECK_MSG(bad == 0, "%d of %d values differ", bad, N);
  CHECK_GUARD(got);
  sdw_test_free_guarded(got);
}

/* The float building blocks against double precision: ln within 3e-7
 * relative (the polynomial measured ~1.5e-7, i.e. ~1.3 ulp; 3e-7 is 2.5 ulp),
 * sin/cos within 2e-7 absolute (measured 8.5e-8, 1.4 ulp of 1), over sweeps
 * that include the end points. */
SDW_TEST(philox_float_math) {
  double worst_log = 0, worst_trig = 0;
  for (uint64_t x = 0; x <= UINT32_MAX; x += 65521) {
    float u = sdw_philox_uniform_pos((uint32_t)x);
    CHECK(u > 0 && u <= 1);
    double want = log((double)u);
    double err = fabs((double)sdw_philox_log(u) - want);
    if (want != 0) worst_log = fmax(worst_log, err / fabs(want));
  }
  CHECK(sdw_philox_log(1.0f) == 0.0f);
  CHECK(sdw_philox_uniform_pos(0) == 0x1p-33f && sdw_philox_uniform_pos(UINT32_MAX) == 1.0f);
  CHECK(sdw_philox_uniform(0) == 0.0f && sdw_philox_uniform(UINT32_MAX) == 1.0f - 0x1p-24f);
  for (uint32_t k = 0; k < (1u << 24); k += 97) {
    float s, c;
    sdw_philox_sincos_turns(k, &s, &c);
    double a = TWO_PI * (double)k / 16777216.0;
    worst_trig = fmax(worst_trig, fmax(fabs(s - sin(a)), fabs(c - cos(a))));
  }
  for (uint32_t k = (1u << 24) - 64; k < (1u << 24); k++) {
    float s, c;
    sdw_philox_sincos_turns(k, &s, &c);
    double a = TWO_PI * (double)k / 16777216.0;
    worst_trig = fmax(worst_trig, fmax(fabs(s - sin(a)), fabs(c - cos(a))));
  }
  CHECK_MSG(worst_log <= 3e-7, "log relative error %.3g", worst_log);
  CHECK_MSG(worst_trig <= 2e-7, "sin/cos error %.3g", worst_trig);
}

/* Box-Muller in float against the same formula in double on the same u32:
 * |z - z_ref| <= 1e-6 * max(1, r). Budget: ln 2.5 ulp (relative), sqrt and
 * the products 0.5 ulp each, sin/cos 2e-7 absolute: about 4e-7 * r in all;
 * 1e-6 leaves margin and still catches any formula slip (a swapped sin/cos
 * or a wrong constant is an O(1) error). */
SDW_TEST(rng_normal_matches_double_box_muller) {
  enum { N = 1 << 16 };
  uint32_t *x = malloc(N * sizeof *x);
  float *z = malloc(N * sizeof *z);
  REQUIRE(x && z);
  sdw_rng_fill_u32(x, N, 2024, 11, 0);
  sdw_rng_fill_normal(z, N, 2024, 11, 0);
  double worst = 0;
  for (int i = 0; i < N; i += 2) {
    double u1 = (double)sdw_philox_uniform_pos(x[i]); /* exactly the float u1 */
    double angle = TWO_PI * (double)(x[i + 1] >> 8) / 16777216.0;
    double r = sqrt(-2.0 * log(u1));
    double e0 = fabs(z[i] - r * cos(angle)), e1 = fabs(z[i + 1] - r * sin(angle));
    worst = fmax(worst, fmax(e0, e1) / fmax(1.0, r));
  }
  CHECK_MSG(worst <= 1e-6, "worst Box-Muller error %.3g", worst);
  free(x);
  free(z);
}

/* Moments of 2^20 draws. With n = 2^20: sd(mean) = 1/1024 = 9.8e-4 (normal)
 * and sqrt(1/12/n) = 2.8e-4 (uniform); sd(variance) = sqrt(2/n) = 1.4e-3;
 * sd of a fraction p is sqrt(p(1-p)/n) <= 4.9e-4. Tolerances are 5 sd (a
 * correct generator fails with p < 1e-6; the seeds are fixed anyway). */
SDW_TEST(rng_distribution_moments) {
  enum { N = 1 << 20 };
  float *v = malloc(N * sizeof *v);
  REQUIRE(v);
  sdw_rng_fill_normal(v, N, 31337, 0, 0);
  double sum = 0, sum2 = 0, max_abs = 0;
  long within1 = 0, within2 = 0;
  for (int i = 0; i < N; i++) {
    double z = v[i];
    sum += z;
    sum2 += z * z;
    max_abs = fmax(max_abs, fabs(z));
    within1 += fabs(z) < 1;
    within2 += fabs(z) < 2;
  }
  double mean = sum / N, var = sum2 / N - mean * mean;
  CHECK_MSG(fabs(mean) < 5 * 9.8e-4, "normal mean %.5f", mean);
  CHECK_MSG(fabs(var - 1) < 5 * 1.4e-3, "normal variance %.5f", var);
  /* P(|Z| < 1) = 0.682689, P(|Z| < 2) = 0.954500 */
  CHECK_MSG(fabs((double)within1 / N - 0.682689) < 5 * 4.6e-4, "P(|z|<1) = %.5f",
            (double)within1 / N);
  CHECK_MSG(fabs((double)within2 / N - 0.954500) < 5 * 2.1e-4, "P(|z|<2) = %.5f",
            (double)within2 / N);
  CHECK_MSG(max_abs <= 6.77 && max_abs > 4, "max |z| = %.3f (bounded by sqrt(66 ln 2))", max_abs);

  sdw_rng_fill_uniform(v, N, 31337, 1, 0);
  sum = sum2 = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < N; i++) {
    sum += v[i];
    sum2 += (double)v[i] * v[i];
    lo = fminf(lo, v[i]);
    hi = fmaxf(hi, v[i]);
  }
  mean = sum / N;
  var = sum2 / N - mean * mean;
  CHECK(lo >= 0 && hi < 1);
  CHECK_MSG(fabs(mean - 0.5) < 5 * 2.8e-4, "uniform mean %.5f", mean);
  /* var of U(0,1) = 1/12; sd of the sample variance = sqrt(1/180/n) = 7.3e-5 */
  CHECK_MSG(fabs(var - 1.0 / 12) < 5 * 7.3e-5, "uniform variance %.6f", var);
  free(v);
}
