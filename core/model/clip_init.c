/* Random CLIP text encoder and its folder writer (see clip_init.h). */
#include "core/model/clip_init.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/rng.h"
#include "core/base/safetensors.h"

/* Standard deviation of parameter name (0: zero, <0: one), transformers'
 * rule for CLIPTextModel with initializer_factor 1. */
static double init_std(const sdw_clip_text_config *c, const char *name) {
  const double D = (double)c->hidden_size, L = (double)c->num_layers;
  const size_t n = strlen(name);
  const bool weight = n > 7 && strcmp(name + n - 7, ".weight") == 0;
  if (strstr(name, "layer_norm")) return weight ? -1.0 : 0.0;
  if (!weight) return 0.0;
  if (strstr(name, "embedding")) return 0.02;
  if (strstr(name, "out_proj")) return pow(D, -0.5);
  if (strstr(name, "fc1")) return pow(2 * D, -0.5);
  return pow(D, -0.5) * pow(2 * L, -0.5); /* q, k, v, fc2 */
}

sdw_status sdw_clip_text_init_random(sdw_clip_text *m, uint64_t seed) {
  for (int i = 0; i < m->params.count; i++) {
    sdw_param *p = &m->params.items[i];
    float *v = m->params.flat + p->offset;
    const size_t numel = (size_t)sdw_tensor_numel(&p->value);
    const double std = init_std(&m->config, p->name);
    if (std < 0) {
      for (size_t k = 0; k < numel; k++)
        v[k] = 1.0f;
    } else if (std == 0) {
      memset(v, 0, numel * sizeof *v);
    } else {
      sdw_rng_fill_normal(v, numel, seed, 0x636c6970u + (uint64_t)i, 0);
      for (size_t k = 0; k < numel; k++)
        v[k] = (float)(v[k] * std);
    }
  }
  return SDW_OK;
}

sdw_status sdw_clip_text_save(const sdw_clip_text *m, const char *dir, const char *note) {
  SDW_TRY(sdw_mkdir_p(dir));
  const sdw_clip_text_config *c = &m->config;
  char path[4096], json[2048];
  int n =
      snprintf(json, sizeof json,
               "{\n  \"architectures\": [\"CLIPTextModel\"],\n"
               "  \"model_type\": \"clip_text_model\",\n"
               "  \"vocab_size\": %lld,\n  \"hidden_size\": %lld,\n"
               "  \"intermediate_size\": %lld,\n  \"num_hidden_layers\": %lld,\n"
               "  \"num_attention_heads\": %lld,\n  \"max_position_embeddings\": %lld,\n"
               "  \"hidden_act\": \"%s\",\n  \"layer_norm_eps\": %g,\n"
               "  \"projection_dim\": %lld,\n  \"bos_token_id\": 49406,\n"
               "  \"eos_token_id\": %lld,\n  \"pad_token_id\": 1,\n"
               "  \"torch_dtype\": \"float32\"\n}\n",
               (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->intermediate_size,
               (long long)c->num_layers, (long long)c->num_heads, (long long)c->max_positions,
               c->act == SDW_CLIP_ACT_GELU ? "gelu" : "quick_gelu", (double)c->layer_norm_eps,
               (long long)c->hidden_size, (long long)c->eos_token_id);
  if (n < 0 || (size_t)n >= sizeof json) return sdw_fail(SDW_ERR_INTERNAL, "config too long");
  snprintf(path, sizeof path, "%s/config.json", dir);
  SDW_TRY(sdw_atomic_write(path, json, (size_t)n));
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  sdw_status st = sdw_safetensors_writer_set_metadata(w, "format", "pt");
  if (st == SDW_OK && note) st = sdw_safetensors_writer_set_metadata(w, "sdw.note", note);
  for (int i = 0; i < m->params.count && st == SDW_OK; i++) {
    const sdw_param *p = &m->params.items[i];
    char name[SDW_PARAM_NAME_MAX + 16];
    snprintf(name, sizeof name, "text_model.%s", p->name);
    st = sdw_safetensors_writer_add(w, name, SDW_F32, p->value.ndim, p->value.shape,
                                    m->params.flat + p->offset);
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  sdw_safetensors_writer_destroy(w);
  return st;
}
