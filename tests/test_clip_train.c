/* The CLIP text encoder's training forward and backward
 * (core/model/clip_train.c).
 *
 * Reference: transformers' CLIPTextModel autograd in float64 on the
 * clip-text-tiny golden (tests/data/goldens/clip-text-tiny/grads.safetensors,
 * tools/gen_clip_backward_golden.py): loss = sum(last_hidden_state * R), so
 * the backward starts from R; the golden's input_ids with and without its
 * attention_mask.
 *
 * Error of a gradient: max|got - want| / max(max|want|, S), S = 1e-3 x the
 * largest gradient element of the case (the k_proj biases' gradients are
 * zero in exact arithmetic, their float32 values rounding noise). PyTorch's
 * own float32 backward lands at 2.2e-5 (no mask) and 5.0e-5 (mask) against
 * float64 (the golden's f32_rel); the tolerance 5e-4 leaves 10x headroom.
 * A defect lands far above it: a missing residual or a wrong head split is
 * O(1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/safetensors.h"
#include "core/model/clip.h"
#include "core/model/clip_train.h"
#include "kernels/ops.h"
#include "tests/test.h"

enum { GB = 3, GT = 77, GD = 64 };
static const double grad_tolerance = 5e-4;

/* max|got - want| / max(max|want|, scale) */
static double grad_err(const float *got, const double *want, int64_t n, double scale) {
  double d = 0;
  for (int64_t i = 0; i < n; i++)
    d = fmax(d, fabs((double)got[i] - want[i]));
  return d / fmax(sdw_test_max_abs_f64(want, n), scale);
}

/* Checks every gradient of grads against the golden of suffix sfx. */
static void check_grads(const sdw_clip_text *grads, const sdw_safetensors *gold, const char *sfx,
                        double factor) {
  char key[SDW_PARAM_NAME_MAX + 64];
  /* the case's scale: the largest golden gradient element */
  double top = 0;
  for (int i = 0; i < grads->params.count; i++) {
    snprintf(key, sizeof key, "grad%s.text_model.%s", sfx, grads->params.items[i].name);
    const sdw_safetensors_entry *e = sdw_safetensors_find(gold, key);
    if (e && e->dtype == SDW_F64) top = fmax(top, sdw_test_max_abs_f64(e->data, e->numel));
  }
  snprintf(key, sizeof key, "token_grad_rows%s", sfx);
  const sdw_safetensors_entry *rows = sdw_test_golden_tensor(gold, key, SDW_F64, -1);
  const sdw_safetensors_entry *ids = sdw_test_golden_tensor(gold, "token_ids", SDW_I64, -1);
  if (!rows || !ids) return;
  top = fmax(top, sdw_test_max_abs_f64(rows->data, rows->numel));
  const double scale = 1e-3 * top * factor;
  double worst = 0;
  int checked = 0;
  for (int i = 0; i < grads->params.count; i++) {
    const sdw_param *p = &grads->params.items[i];
    const float *got = p->value.data;
    const int64_t n = sdw_tensor_numel(&p->value);
    if (strcmp(p->name, "embeddings.token_embedding.weight") == 0) {
      /* the rows of the ids seen, and every other row still zero */
      const int64_t *id = ids->data;
      const int64_t U = ids->numel, D = p->value.shape[1];
      double *want = malloc((size_t)(U * D) * sizeof *want);
      float *have = malloc((size_t)(U * D) * sizeof *have);
      for (int64_t u = 0; u < U * D; u++)
        want[u] = ((const double *)rows->data)[u] * factor;
      for (int64_t u = 0; u < U; u++)
        memcpy(have + u * D, got + id[u] * D, (size_t)D * sizeof *have);
      const double e = grad_err(have, want, U * D, scale);
      worst = fmax(worst, e);
      CHECK_REL(e, grad_tolerance, p->name);
      int64_t nonzero = 0;
      for (int64_t r = 0, u = 0; r < p->value.shape[0]; r++) {
        if (u < U && id[u] == r) {
          u++;
          continue;
        }
        for (int64_t c = 0; c < D; c++)
          nonzero += got[r * D + c] != 0.0f;
      }
      CHECK(nonzero == 0);
      free(want);
      free(have);
      checked++;
      continue;
    }
    snprintf(key, sizeof key, "grad%s.text_model.%s", sfx, p->name);
    const sdw_safetensors_entry *e = sdw_test_golden_tensor(gold, key, SDW_F64, n);
    if (!e) continue;
    double *want = malloc((size_t)n * sizeof *want);
    for (int64_t u = 0; u < n; u++)
      want[u] = ((const double *)e->data)[u] * factor;
    const double err = grad_err(got, want, n, scale);
    worst = fmax(worst, err);
    CHECK_REL(err, grad_tolerance, p->name);
    free(want);
    checked++;
  }
  CHECK(checked == grads->params.count);
  printf("    clip backward%s x%.0f: %d gradients, worst error %.3g (tolerance %g)\n", sfx, factor,
         checked, worst, grad_tolerance);
}

SDW_TEST(clip_train_backward_matches_transformers_autograd) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/goldens/clip-text-tiny", sdw_test_data_dir());
  sdw_safetensors *io = NULL, *gold = NULL;
  snprintf(path, sizeof path, "%s/io.safetensors", dir);
  CHECK_OK(sdw_safetensors_open(path, &io));
  snprintf(path, sizeof path, "%s/grads.safetensors", dir);
  CHECK_OK(sdw_safetensors_open(path, &gold));
  sdw_clip_text m, g;
  memset(&g, 0, sizeof g);
  CHECK_OK(sdw_clip_text_open(&m, ctx, dir, NULL));
  sdw_arena *arena = NULL;
  CHECK_OK(sdw_arena_create(&arena, "clip train test", (size_t)1 << 30));
  if (io && gold && m.ctx && arena && sdw_clip_text_init(&g, ctx, &m.config) == SDW_OK) {
    sdw_tensor ids = {0}, mask = {0}, R = {0};
    CHECK_OK(sdw_safetensors_tensor(io, sdw_safetensors_find(io, "input_ids"), &ids));
    CHECK_OK(sdw_safetensors_tensor(io, sdw_safetensors_find(io, "attention_mask"), &mask));
    CHECK_OK(
        sdw_safetensors_tensor(gold, sdw_test_golden_tensor(gold, "R", SDW_F32, GB * GT * GD), &R));
    float *last = sdw_test_alloc_guarded((size_t)GB * GT * GD, "last_hidden");
    float *ref = sdw_test_alloc_guarded((size_t)GB * GT * GD, "inference last_hidden");
    sdw_tensor lt = sdw_tensor_3d(last, SDW_F32, GB, GT, GD);
    sdw_tensor rt = sdw_tensor_3d(ref, SDW_F32, GB, GT, GD);
    for (int masked = 0; masked < 2; masked++) {
      const char *sfx = masked ? "_masked" : "";
      sdw_clip_text_tape *tape = NULL;
      CHECK_OK(sdw_clip_text_forward_train(&m, arena, &ids, masked ? &mask : NULL, &lt, &tape));
      /* the training forward computes what the inference one does */
      sdw_clip_text_outputs out = {.last_hidden_state = &rt};
      CHECK_OK(sdw_clip_text_forward(&m, &ids, masked ? &mask : NULL, &out));
      CHECK_REL(sdw_test_rel_err_f32(last, ref, (size_t)GB * GT * GD), 1e-6,
                "training forward vs inference forward");
      if (!tape) break;
      sdw_tensor flat = sdw_tensor_1d(g.params.flat, SDW_F32, (int64_t)g.params.total);
      CHECK_OK(ctx->ops->fill(ctx, &flat, 0.0f));
      CHECK_OK(sdw_clip_text_backward(&m, &g, arena, tape, &R));
      check_grads(&g, gold, sfx, 1.0);
      /* gradients accumulate (kernels/ops.h): a second backward doubles them */
      CHECK_OK(sdw_clip_text_backward(&m, &g, arena, tape, &R));
      check_grads(&g, gold, sfx, 2.0);
      sdw_arena_reset(arena);
    }
    CHECK_GUARD(last);
    CHECK_GUARD(ref);
    sdw_test_free_guarded(last);
    sdw_test_free_guarded(ref);
    sdw_clip_text_free(&g);
  }
  if (m.ctx) sdw_clip_text_free(&m);
  sdw_arena_destroy(arena);
  sdw_safetensors_close(gold);
  sdw_safetensors_close(io);
  sdw_ctx_destroy(ctx);
}
