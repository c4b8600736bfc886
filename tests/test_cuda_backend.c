/* The CUDA backend's table without a GPU: in CUDA builds every entry of
 * sdw_backend_cuda() is filled (a missing designated initializer would leave
 * a NULL that only a GPU run would hit), the name and device kind are
 * right, and creating a context on a machine without a usable device is a
 * clean SDW_ERR_DEVICE (or, with a GPU, succeeds and is destroyed). In
 * CPU-only builds sdw_backend_cuda() is NULL. */
#include <stddef.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"

/* Number of NULL function pointers among the entries after name and device. */
static int null_entries(const sdw_backend *b) {
  const size_t first = offsetof(sdw_backend, ctx_create);
  const size_t count = (sizeof(sdw_backend) - first) / sizeof(void (*)(void));
  int nulls = 0;
  for (size_t i = 0; i < count; i++) {
    void (*fn)(void);
    memcpy(&fn, (const char *)b + first + i * sizeof fn, sizeof fn);
    if (!fn) nulls++;
  }
  return nulls;
}

SDW_TEST(cuda_backend_table) {
  /* the check itself, on the CPU table: complete */
  CHECK(null_entries(sdw_backend_cpu()) == 0);
  const sdw_backend *b = sdw_backend_cuda();
#ifdef SDW_HAVE_CUDA
  REQUIRE(b != NULL);
  CHECK(strcmp(b->name, "cuda") == 0);
  CHECK(b->device == SDW_DEVICE_CUDA);
  CHECK(null_entries(b) == 0);
  sdw_ctx *ctx = NULL;
  sdw_status st = sdw_ctx_create(b, 0, &ctx);
  if (st == SDW_OK) {
    CHECK(ctx != NULL && ctx->ops == b);
    sdw_ctx_destroy(ctx);
  } else {
    CHECK(st == SDW_ERR_DEVICE);
    CHECK(ctx == NULL);
    CHECK(strlen(sdw_last_error()) > 0);
  }
#else
  CHECK(b == NULL);
#endif
}
