/* core/base: status messages, tensor bookkeeping, 16-bit float conversions
 * and arenas. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/parse.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "tests/test.h"

SDW_TEST(status_messages_and_prefix) {
  sdw_status st = sdw_fail(SDW_ERR_IO, "weights.safetensors: %s", "No such file or directory");
  CHECK(st == SDW_ERR_IO);
  CHECK(strcmp(sdw_last_error(), "weights.safetensors: No such file or directory") == 0);
  sdw_error_prefix("loading %s", "unet");
  CHECK(strcmp(sdw_last_error(), "loading unet: weights.safetensors: No such file or directory") ==
        0);
  CHECK(strcmp(sdw_status_name(SDW_OK), "ok") == 0);
  CHECK(strcmp(sdw_status_name((sdw_status)999), "unknown status") == 0);
  for (int s = 0; s < SDW_STATUS_COUNT; s++)
    CHECK(sdw_status_name((sdw_status)s)[0] != '\0');
  sdw_clear_error();
  CHECK(sdw_last_error()[0] == '\0');
}

SDW_TEST(status_long_messages_are_truncated_not_overflowed) {
  char big[4000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  sdw_fail(SDW_ERR_FORMAT, "%s", big);
  CHECK(strlen(sdw_last_error()) < 1024);
  sdw_error_prefix("%s", big);
  CHECK(strlen(sdw_last_error()) < 1024);
}

SDW_TEST(tensor_bookkeeping) {
  float data[2 * 3 * 4 * 5];
  sdw_tensor t = sdw_tensor_4d(data, SDW_F32, 2, 3, 4, 5);
  CHECK(sdw_tensor_numel(&t) == 120);
  CHECK(sdw_tensor_nbytes(&t) == 480);
  CHECK(sdw_tensor_span(&t, 1, 3) == 12);
  char buf[64];
  CHECK(strcmp(sdw_shape_str(&t, buf, sizeof buf), "[2, 3, 4, 5]") == 0);
  sdw_tensor s = sdw_tensor_make(NULL, SDW_BF16, 0, NULL);
  CHECK(sdw_tensor_numel(&s) == 1); /* a scalar */
  CHECK(strcmp(sdw_shape_str(&s, buf, sizeof buf), "[]") == 0);
  sdw_tensor u = sdw_tensor_2d(data, SDW_F32, 6, 20);
  CHECK(!sdw_tensor_same_shape(&t, &u));
  for (int d = 0; d < SDW_DTYPE_COUNT; d++) {
    sdw_dtype back;
    CHECK(sdw_dtype_from_name(sdw_dtype_name((sdw_dtype)d), &back) && back == (sdw_dtype)d);
  }
  sdw_dtype unused;
  CHECK(!sdw_dtype_from_name("F128", &unused));
}

/* Reference values: IEEE 754 binary16 / bfloat16 encodings, worked out from
 * the formats' definitions (sign, biased exponent, mantissa). */
SDW_TEST(half_and_bfloat_conversions) {
  CHECK(sdw_f32_to_f16(1.0f) == 0x3c00);
  CHECK(sdw_f32_to_f16(-2.0f) == 0xc000);
  CHECK(sdw_f32_to_f16(65504.0f) == 0x7bff);       /* largest finite half */
  CHECK(sdw_f32_to_f16(65520.0f) == 0x7c00);       /* rounds up to infinity */
  CHECK(sdw_f32_to_f16(5.9604645e-8f) == 0x0001);  /* smallest subnormal */
  CHECK(sdw_f32_to_f16(2.9802322e-8f) == 0x0000);  /* half of it: tie to even (0) */
  CHECK(sdw_f32_to_f16(8.940697e-8f) == 0x0002);   /* 1.5 subnormals: tie to even (2) */
  CHECK(sdw_f32_to_f16(1.0009765625f) == 0x3c01);  /* 1 + 2^-10 exactly */
  CHECK(sdw_f32_to_f16(1.00048828125f) == 0x3c00); /* 1 + 2^-11: tie to even */
  CHECK(sdw_f32_to_f16(1.00146484375f) == 0x3c02); /* 1 + 3*2^-11: tie to even (up) */
  CHECK((sdw_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (sdw_f32_to_f16(NAN) & 0x3ff) != 0);
  CHECK(sdw_f16_to_f32(0x3c00) == 1.0f);
  CHECK(sdw_f16_to_f32(0x0001) == 5.9604645e-8f);
  CHECK(isinf(sdw_f16_to_f32(0xfc00)) && sdw_f16_to_f32(0xfc00) < 0);
  for (uint32_t h = 0; h < 0x10000; h++) { /* every finite half round-trips */
    if ((h & 0x7c00) == 0x7c00) continue;
    CHECK_MSG(sdw_f32_to_f16(sdw_f16_to_f32((uint16_t)h)) == h, "half 0x%04x", h);
  }
  CHECK(sdw_f32_to_bf16(1.0f) == 0x3f80);
  CHECK(sdw_f32_to_bf16(1.00390625f) == 0x3f80); /* 1 + 2^-8: tie to even (down) */
  CHECK(sdw_f32_to_bf16(1.01171875f) == 0x3f82); /* 1 + 3*2^-8: tie to even (up) */
  CHECK(sdw_bf16_to_f32(0xc000) == -2.0f);
  CHECK(isnan(sdw_bf16_to_f32(sdw_f32_to_bf16(NAN))));
  CHECK(sdw_f32_to_bf16(INFINITY) == 0x7f80);
}

SDW_TEST(tensor_convert_between_dtypes) {
  int64_t ids[4] = {0, 49406, 49407, -1};
  float f[4];
  sdw_tensor src = sdw_tensor_1d(ids, SDW_I64, 4), dst = sdw_tensor_1d(f, SDW_F32, 4);
  CHECK_OK(sdw_tensor_convert(&src, &dst));
  CHECK(f[1] == 49406.0f && f[3] == -1.0f);
  uint8_t fp8[2] = {0, 0};
  sdw_tensor e = sdw_tensor_1d(fp8, SDW_F8_E4M3, 2), g = sdw_tensor_1d(f, SDW_F32, 2);
  CHECK(sdw_tensor_convert(&e, &g) == SDW_ERR_UNSUPPORTED);
}

SDW_TEST(arena_alignment_marks_and_capacity) {
  sdw_arena *a = NULL;
  CHECK_OK(sdw_arena_create(&a, "test", 1 << 20));
  REQUIRE(a != NULL);
  void *p = sdw_arena_alloc(a, 3);
  void *q = sdw_arena_alloc(a, 100);
  CHECK(((uintptr_t)p % SDW_ARENA_ALIGN) == 0 && ((uintptr_t)q % SDW_ARENA_ALIGN) == 0);
  CHECK((char *)q - (char *)p == SDW_ARENA_ALIGN);
  size_t mark = sdw_arena_mark(a);
  float *z = sdw_arena_calloc(a, 1000 * sizeof(float));
  REQUIRE(z != NULL);
  CHECK(z[0] == 0.0f && z[999] == 0.0f);
  size_t peak = sdw_arena_peak(a);
  sdw_arena_reset_to(a, mark);
  CHECK(sdw_arena_used(a) == mark);
  CHECK(sdw_arena_peak(a) == peak);
  CHECK(sdw_arena_alloc(a, 2u << 20) == NULL); /* more than the capacity */
  CHECK(strstr(sdw_last_error(), "arena test is full") != NULL);
  CHECK(sdw_arena_alloc(a, SIZE_MAX) == NULL); /* no overflow in the bound check */
  sdw_tensor t;
  CHECK_OK(sdw_arena_tensor(a, &t, SDW_BF16, 2, (int64_t[]){3, 5}));
  CHECK(t.data != NULL && sdw_tensor_nbytes(&t) == 30);
  sdw_arena_reset(a);
  CHECK(sdw_arena_used(a) == 0);
  sdw_arena_destroy(a);
}

SDW_TEST(strict_number_parsing) {
  int64_t i = 7;
  CHECK(sdw_parse_i64("42", 0, 100, &i) && i == 42);
  CHECK(sdw_parse_i64("-5", -10, 10, &i) && i == -5);
  CHECK(!sdw_parse_i64("", 0, 100, &i) && !sdw_parse_i64("4x", 0, 100, &i));
  CHECK(!sdw_parse_i64("101", 0, 100, &i) && !sdw_parse_i64("99999999999999999999", 0, 100, &i));
  CHECK(i == -5); /* untouched on failure */
  double d = 0;
  CHECK(sdw_parse_double("0.28", 0, 1, &d) && d == 0.28);
  CHECK(!sdw_parse_double("nan", -1e9, 1e9, &d) &&
        !sdw_parse_double("inf", -HUGE_VAL, HUGE_VAL, &d));
  CHECK(!sdw_parse_double("1e999", -HUGE_VAL, HUGE_VAL, &d) && !sdw_parse_double("2", 0, 1, &d));
  CHECK(!sdw_parse_double("0.5 ", 0, 1, &d) && d == 0.28);
}
