/* core/model/clip_init: the demo's random CLIP text encoder.
 *  - every parameter's empirical mean and standard deviation match
 *    transformers' _init_weights rule for CLIPTextModel, computed here from
 *    the config in double (the rule, not the code under test);
 *  - the weights are a function of the seed alone;
 *  - the saved folder opens with sdw_clip_text_open (config.json parsed
 *    back, every weight found under transformers' names) and encodes
 *    exactly as the model it was saved from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/model/clip_init.h"
#include "kernels/ops.h"
#include "tests/test.h"

static sdw_clip_text_config tiny_config(void) {
  sdw_clip_text_config c = sdw_clip_text_config_vit_l14();
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.intermediate_size = 256;
  return c;
}

SDW_TEST(clip_init_follows_transformers_rule) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  sdw_clip_text m;
  sdw_clip_text_config c = tiny_config();
  CHECK_OK(sdw_clip_text_init(&m, ctx, &c));
  CHECK_OK(sdw_clip_text_init_random(&m, 1234));
  const double D = 64, L = 2;
  const double proj = pow(D, -0.5) * pow(2 * L, -0.5);
  struct {
    const char *name;
    double std; /* -1: all ones */
  } want[] = {
      {"embeddings.token_embedding.weight", 0.02},
      {"embeddings.position_embedding.weight", 0.02},
      {"encoder.layers.0.self_attn.q_proj.weight", proj},
      {"encoder.layers.1.self_attn.v_proj.weight", proj},
      {"encoder.layers.0.self_attn.out_proj.weight", pow(D, -0.5)},
      {"encoder.layers.1.mlp.fc1.weight", pow(2 * D, -0.5)},
      {"encoder.layers.0.mlp.fc2.weight", proj},
      {"encoder.layers.0.mlp.fc1.bias", 0},
      {"encoder.layers.1.layer_norm2.weight", -1},
      {"final_layer_norm.bias", 0},
  };
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    const sdw_param *p = NULL;
    for (int i = 0; i < m.params.count; i++)
      if (strcmp(m.params.items[i].name, want[w].name) == 0) p = &m.params.items[i];
    CHECK_MSG(p != NULL, "no parameter %s", want[w].name);
    if (!p) continue;
    const float *v = m.params.flat + p->offset;
    const int64_t n = sdw_tensor_numel(&p->value);
    double s = 0, s2 = 0;
    for (int64_t k = 0; k < n; k++) {
      s += v[k];
      s2 += (double)v[k] * v[k];
    }
    const double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    if (want[w].std < 0) {
      CHECK_MSG(mean == 1.0 && sd == 0.0, "%s: not all ones", want[w].name);
    } else if (want[w].std == 0) {
      CHECK_MSG(s2 == 0.0, "%s: not all zeros", want[w].name);
    } else {
      /* n >= 4096 normal samples: the std's relative standard error is
       * 1/sqrt(2n) <= 1.1%, the mean's std/sqrt(n) <= 1.6% of std; 5% and
       * 8% are > 4.5 standard errors, while a wrong rule (e.g. 0.02 for
       * every weight, or D^-0.5 for q/k/v) is off by 20% or more */
      CHECK_MSG(fabs(sd / want[w].std - 1) < 0.05, "%s: std %.5f, want %.5f", want[w].name, sd,
                want[w].std);
      CHECK_MSG(fabs(mean) < 0.08 * want[w].std, "%s: mean %.5f", want[w].name, mean);
    }
  }
  /* the same seed gives the same bits, another seed others */
  sdw_clip_text m2;
  CHECK_OK(sdw_clip_text_init(&m2, ctx, &c));
  CHECK_OK(sdw_clip_text_init_random(&m2, 1234));
  CHECK(memcmp(m.params.flat, m2.params.flat, m.params.total * sizeof(float)) == 0);
  CHECK_OK(sdw_clip_text_init_random(&m2, 1235));
  CHECK(memcmp(m.params.flat, m2.params.flat, m.params.total * sizeof(float)) != 0);
  sdw_clip_text_free(&m2);
  sdw_clip_text_free(&m);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(clip_init_saved_folder_opens_and_encodes_the_same) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  sdw_clip_text m, back;
  sdw_clip_text_config c = tiny_config();
  CHECK_OK(sdw_clip_text_init(&m, ctx, &c));
  CHECK_OK(sdw_clip_text_init_random(&m, 7));
  char dir[] = "/tmp/sdw-clip-init-XXXXXX";
  REQUIRE(mkdtemp(dir));
  char sub[512];
  snprintf(sub, sizeof sub, "%s/text_encoder", dir);
  CHECK_OK(sdw_clip_text_save(&m, sub, "test"));
  CHECK_OK(sdw_clip_text_open(&back, ctx, sub, NULL));
  CHECK(back.config.hidden_size == 64 && back.config.num_layers == 2 &&
        back.config.num_heads == 4 && back.config.intermediate_size == 256);
  CHECK(back.params.total == m.params.total);
  if (back.params.total == m.params.total)
    CHECK(memcmp(m.params.flat, back.params.flat, m.params.total * sizeof(float)) == 0);
  int32_t ids[2 * 77] = {0};
  for (int i = 0; i < 2 * 77; i++)
    ids[i] = 49407;
  ids[0] = ids[77] = 49406;
  ids[1] = 1000;
  ids[78] = 2000;
  sdw_tensor t_ids = sdw_tensor_2d(ids, SDW_I32, 2, 77);
  float *a = calloc(2 * 77 * 64, sizeof(float)), *b = calloc(2 * 77 * 64, sizeof(float));
  REQUIRE(a && b);
  sdw_tensor ta = sdw_tensor_3d(a, SDW_F32, 2, 77, 64), tb = sdw_tensor_3d(b, SDW_F32, 2, 77, 64);
  sdw_clip_text_outputs oa = {.last_hidden_state = &ta}, ob = {.last_hidden_state = &tb};
  CHECK_OK(sdw_clip_text_forward(&m, &t_ids, NULL, &oa));
  CHECK_OK(sdw_clip_text_forward(&back, &t_ids, NULL, &ob));
  /* the same weights and code: the same bits */
  CHECK(memcmp(a, b, 2 * 77 * 64 * sizeof(float)) == 0);
  /* and the two prompts differ after their first token */
  CHECK(memcmp(a + 64, b + 77 * 64 + 64, 64 * sizeof(float)) != 0);
  free(a);
  free(b);
  sdw_clip_text_free(&back);
  sdw_clip_text_free(&m);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
  sdw_ctx_destroy(ctx);
}
