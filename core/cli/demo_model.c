/* Loading a trainer checkpoint for sampling (see demo_model.h). */
#include "core/cli/demo_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/base/png_image.h"
#include "core/base/safetensors.h"
#include "core/train/checkpoint.h"
#include "core/train/trainer.h"
#include "core/train/unet_init.h"

sdw_status sdw_demo_latest_checkpoint(const char *run, char *buf, size_t size) {
  char latest[4096];
  snprintf(latest, sizeof latest, "%s/checkpoints/latest", run);
  void *data = NULL;
  size_t n = 0;
  if (sdw_read_file(latest, &data, &n) != SDW_OK)
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s has no checkpoint yet (no %s)", run, latest);
  char name[1024];
  size_t k = n < sizeof name - 1 ? n : sizeof name - 1;
  memcpy(name, data, k);
  name[k] = '\0';
  free(data);
  name[strcspn(name, "\r\n")] = '\0';
  if (!name[0] || strchr(name, '/'))
    return sdw_fail(SDW_ERR_FORMAT, "%s does not name a checkpoint file", latest);
  snprintf(buf, size, "%s/checkpoints/%s", run, name);
  return SDW_OK;
}

void sdw_run_config_value(const char *text, const char *key, char *out, size_t size) {
  out[0] = '\0';
  const size_t kl = strlen(key);
  for (const char *line = text; line && *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    const char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncmp(p, key, kl) == 0) {
      const char *q = p + kl;
      while (*q == ' ' || *q == '\t')
        q++;
      if (*q == '=') {
        q++;
        while (*q == ' ' || *q == '\t')
          q++;
        size_t vl = (size_t)(line + len - q);
        while (vl && (q[vl - 1] == ' ' || q[vl - 1] == '\r' || q[vl - 1] == '\t'))
          vl--;
        if (vl >= size) vl = size - 1;
        memcpy(out, q, vl);
        out[vl] = '\0';
        return;
      }
    }
    line = end ? end + 1 : NULL;
  }
}

sdw_status sdw_demo_model_open(const char *path, const char *text_encoder, int ema, bool untrained,
                               uint64_t init_seed, sdw_demo_model *m) {
  const sdw_demo_model_options o = {.text_encoder = text_encoder,
                                    .tokenizer = SDW_TOKENIZER_HF,
                                    .ema = ema,
                                    .untrained = untrained,
                                    .init_seed = init_seed};
  return sdw_demo_model_open_with(path, &o, m);
}

/* The checkpoint file path names (a run directory: its latest) into buf. */
static sdw_status resolve(const char *path, char *buf, size_t size) {
  struct stat sb;
  if (stat(path, &sb) != 0) return sdw_fail(SDW_ERR_NOT_FOUND, "%s does not exist", path);
  if (S_ISDIR(sb.st_mode)) return sdw_demo_latest_checkpoint(path, buf, size);
  snprintf(buf, size, "%s", path);
  return SDW_OK;
}

sdw_status sdw_demo_model_probe(const char *path, sdw_demo_model_info *out) {
  memset(out, 0, sizeof *out);
  char ck[4096], vae[4096];
  char *config = NULL; /* malloc'd INI text */
  struct stat sb;
  if (resolve(path, ck, sizeof ck) == SDW_OK) {
    sdw_safetensors *meta = NULL;
    SDW_TRY(sdw_safetensors_open(ck, &meta));
    const char *format = sdw_safetensors_metadata_get(meta, "format");
    const char *text = sdw_safetensors_metadata_get(meta, "config");
    if (format && strcmp(format, SDW_CHECKPOINT_FORMAT) == 0 && text) config = strdup(text);
    sdw_safetensors_close(meta);
    if (!config)
      return sdw_fail(SDW_ERR_FORMAT, "%s is not an sdw training checkpoint (%s)", ck,
                      SDW_CHECKPOINT_FORMAT);
  } else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    /* a run without a checkpoint yet: what it is comes from its config.ini */
    char ini[4200];
    size_t n = 0;
    snprintf(ini, sizeof ini, "%s/config.ini", path);
    sdw_clear_error();
    SDW_TRY(sdw_read_file(ini, (void **)&config, &n));
    char *z = realloc(config, n + 1);
    if (!z) {
      free(config);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    }
    config = z;
    config[n] = '\0';
  } else {
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s is not an sdw run or training checkpoint", path);
  }
  sdw_run_config_value(config, "vae", vae, sizeof vae);
  sdw_run_config_value(config, "train_data", out->train_data, sizeof out->train_data);
  free(config);
  out->pixels = strcmp(vae, "pixels") == 0;
  char origin[4096];
  if (out->train_data[0] && sdw_trainer_store_origin(out->train_data, origin, sizeof origin,
                                                     &out->height, &out->width) != SDW_OK) {
    out->width = out->height = 0; /* the store moved: the caller asks for a size */
    sdw_clear_error();
  }
  /* a VAE store's latents are smaller than its images: index.json's
   * image_size (the square crop encode made) is the images' side */
  char index[4200];
  void *text = NULL;
  size_t n = 0;
  snprintf(index, sizeof index, "%s/index.json", out->train_data);
  if (out->width && sdw_read_file(index, &text, &n) == SDW_OK) {
    cJSON *root = cJSON_ParseWithLength(text, n);
    const cJSON *side = root ? cJSON_GetObjectItem(root, "image_size") : NULL;
    if (cJSON_IsNumber(side) && side->valuedouble >= 1 && side->valuedouble <= 65536)
      out->width = out->height = (int)side->valuedouble;
    cJSON_Delete(root);
    free(text);
  }
  sdw_clear_error();
  return SDW_OK;
}

/* A path's last component without a checkpoint extension (the infotext's
 * model name, as txt2img_open names models). */
static void model_stem(const char *path, char *buf, size_t size) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/')
    n--;
  size_t start = n;
  while (start > 0 && path[start - 1] != '/')
    start--;
  snprintf(buf, size, "%.*s", (int)(n - start), path + start);
  const size_t l = strlen(buf), e = strlen(".safetensors");
  if (l > e && strcmp(buf + l - e, ".safetensors") == 0) buf[l - e] = '\0';
}

sdw_status sdw_demo_model_open_with(const char *path, const sdw_demo_model_options *o,
                                    sdw_demo_model *m) {
  memset(m, 0, sizeof *m);
  const char *text_encoder = o->text_encoder;
  const int ema = o->ema;
  SDW_TRY(resolve(path, m->checkpoint, sizeof m->checkpoint));
  sdw_safetensors *meta = NULL;
  SDW_TRY(sdw_safetensors_open(m->checkpoint, &meta));
  const char *format = sdw_safetensors_metadata_get(meta, "format");
  const char *unet_json = sdw_safetensors_metadata_get(meta, "unet_config");
  const char *config = sdw_safetensors_metadata_get(meta, "config");
  sdw_status st = SDW_OK;
  if (!format || strcmp(format, SDW_CHECKPOINT_FORMAT) != 0 || !unet_json)
    st = sdw_fail(SDW_ERR_FORMAT, "%s is not an sdw training checkpoint (%s)", m->checkpoint,
                  SDW_CHECKPOINT_FORMAT);
  char vocab[4096] = "";
  if (o->vocab)
    snprintf(vocab, sizeof vocab, "%s", o->vocab);
  else if (config)
    sdw_run_config_value(config, "vocab", vocab, sizeof vocab); /* what the trainer samples with */
  /* the CFG scale the run samples with (sdw eval and sdw demo use it) */
  char cfg_text[32] = "";
  m->sample_cfg = 7.5;
  if (config) sdw_run_config_value(config, "sample_cfg", cfg_text, sizeof cfg_text);
  if (st == SDW_OK && cfg_text[0] && !sdw_parse_double(cfg_text, 0, 1000, &m->sample_cfg))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: bad sample_cfg '%s' in its config", m->checkpoint, cfg_text);
  char te_path[4096] = "", prediction[32] = "", vae_path[4096] = "";
  if (config) sdw_run_config_value(config, "vae", vae_path, sizeof vae_path);
  sdw_prediction_type pt = SDW_PREDICT_EPSILON;
  if (config) sdw_run_config_value(config, "prediction_type", prediction, sizeof prediction);
  if (st == SDW_OK && prediction[0] && !sdw_prediction_type_from_name(prediction, &pt))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: unknown prediction_type '%s' in its config", m->checkpoint,
                  prediction);
  if (st == SDW_OK) {
    if (text_encoder)
      snprintf(te_path, sizeof te_path, "%s", text_encoder);
    else if (config)
      sdw_run_config_value(config, "text_encoder", te_path, sizeof te_path);
    if (!te_path[0] || strcmp(te_path, "none") == 0)
      st = sdw_fail(SDW_ERR_NOT_FOUND, "%s names no text encoder folder — give --text-encoder DIR",
                    m->checkpoint);
  }
  sdw_unet_config uc;
  if (st == SDW_OK) st = sdw_unet_config_parse(unet_json, strlen(unet_json), m->checkpoint, &uc);
  if (st == SDW_OK) st = sdw_ctx_create(sdw_backend_cpu(), 0, &m->ctx);
  if (st == SDW_OK) st = sdw_unet_create(&m->unet, m->ctx, &uc);
  if (st == SDW_OK) m->unet_ok = true;
  if (st == SDW_OK && o->untrained) {
    /* the run's own init: the same zero-initialised modules */
    char zero_name[16] = "";
    sdw_zero_init zi = SDW_ZERO_INIT_SEED;
    if (config) sdw_run_config_value(config, "unet_zero_init", zero_name, sizeof zero_name);
    if (zero_name[0] && !sdw_zero_init_from_name(zero_name, &zi))
      st = sdw_fail(SDW_ERR_FORMAT, "%s: unknown unet_zero_init '%s' in its config", m->checkpoint,
                    zero_name);
    if (st == SDW_OK) st = sdw_unet_init_random_with(&m->unet, o->init_seed, zi);
  } else if (st == SDW_OK) {
    sdw_checkpoint_state state;
    sdw_safetensors *ck = NULL;
    st = sdw_checkpoint_open(m->checkpoint, &m->unet.params, &state, &ck);
    if (st == SDW_OK) {
      char probe[SDW_PARAM_NAME_MAX + 8];
      snprintf(probe, sizeof probe, "ema.%s", m->unet.params.items[0].name);
      const bool has_ema = sdw_safetensors_find(ck, probe) != NULL;
      if (ema == 1 && !has_ema)
        st = sdw_fail(SDW_ERR_NOT_FOUND, "%s keeps no EMA weights", m->checkpoint);
      m->ema = ema != 0 && has_ema;
      sdw_checkpoint_buffers b = {0};
      if (m->ema)
        b.ema = m->unet.params.flat;
      else
        b.model = m->unet.params.flat;
      if (st == SDW_OK) st = sdw_checkpoint_read(ck, &m->unet.params, &b);
      m->step = state.step;
      sdw_safetensors_close(ck);
    }
  }
  sdw_safetensors_close(meta);
  if (st == SDW_OK) st = sdw_clip_text_open(&m->te, m->ctx, te_path, NULL);
  if (st == SDW_OK) m->te_ok = true;
  if (st == SDW_OK && !vocab[0]) st = sdw_tokenizer_default_vocab(vocab, sizeof vocab);
  if (st == SDW_OK) st = sdw_tokenizer_load(vocab, o->tokenizer, &m->tok); /* as the trainer */
  if (st == SDW_OK && vae_path[0] && strcmp(vae_path, "pixels") != 0) {
    st = sdw_vae_open(&m->vae, m->ctx, vae_path, NULL, SDW_VAE_DECODER);
    m->vae_ok = st == SDW_OK;
  }
  if (st == SDW_OK) {
    sdw_txt2img_parts parts = {m->tok, &m->te, &m->unet, m->vae_ok ? &m->vae : NULL};
    st = sdw_txt2img_create(m->ctx, &parts, &m->pipe);
    if (st == SDW_OK) sdw_txt2img_set_prediction(m->pipe, pt);
  }
  if (st == SDW_OK && o->model_hash) {
    char name[256];
    model_stem(path, name, sizeof name);
    st = sdw_txt2img_set_identity(m->pipe, name, m->checkpoint);
  }
  return st;
}

void sdw_demo_model_close(sdw_demo_model *m) {
  sdw_txt2img_free(m->pipe);
  if (m->unet_ok) sdw_unet_free(&m->unet);
  if (m->te_ok) sdw_clip_text_free(&m->te);
  if (m->vae_ok) sdw_vae_free(&m->vae);
  if (m->tok) sdw_tokenizer_free(m->tok);
  if (m->ctx) sdw_ctx_destroy(m->ctx);
  memset(m, 0, sizeof *m);
}

sdw_status sdw_demo_write_grid(const char *path, const uint8_t *rgb, int count, int side, int scale,
                               const char *infotext) {
  const int cell = side * scale, gap = 2, W = count * cell + (count - 1) * gap, H = cell;
  uint8_t *out = malloc((size_t)W * H * 3);
  if (!out) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  memset(out, 255, (size_t)W * H * 3);
  for (int i = 0; i < count; i++)
    for (int y = 0; y < cell; y++)
      for (int x = 0; x < cell; x++) {
        const uint8_t *src = rgb + (((size_t)i * side + y / scale) * side + x / scale) * 3;
        memcpy(out + ((size_t)y * W + i * (cell + gap) + x) * 3, src, 3);
      }
  sdw_png_text text = {"parameters", infotext};
  sdw_status st = sdw_png_write(path, out, W, H, 3, infotext ? &text : NULL, infotext ? 1 : 0);
  free(out);
  return st;
}
