/* Text to image: finding and opening the parts of a model from a path (see
 * sdw_txt2img_open in txt2img.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/log.h"
#include "core/base/safetensors.h"
#include "core/diffusion/txt2img.h"
#include "core/model/seed_checkpoint.h"
#include "core/model/unet_ldm.h"
#include "core/model/weights.h"
#include "core/train/checkpoint.h"
#include "core/train/train_config.h"

static const char *const layout_names[] = {"UNet folder", "UNet weights file", "diffusers pipeline",
                                           "LDM single file", "PyTorch checkpoint"};

const char *sdw_txt2img_layout_name(sdw_txt2img_layout layout) {
  return (unsigned)layout < 5 ? layout_names[layout] : "unknown";
}

static bool is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dir + "/" + name into buf; false when it does not fit. */
static bool join(char *buf, size_t size, const char *dir, const char *name) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--;
  int w = snprintf(buf, size, "%.*s/%s", (int)n, dir, name);
  return w > 0 && (size_t)w < size;
}

/* The folder holding path (a file or a folder) into buf. */
static void parent_dir(const char *path, char *buf, size_t size) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/')
    n--;
  while (n > 0 && path[n - 1] != '/')
    n--;
  while (n > 1 && path[n - 1] == '/')
    n--;
  if (n == 0)
    snprintf(buf, size, ".");
  else
    snprintf(buf, size, "%.*s", (int)n, path);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* The last path component without a known extension ("v1-5.safetensors" ->
 * "v1-5", "models/seed/" -> "seed"). */
static void model_stem(const char *path, char *buf, size_t size) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/')
    n--;
  size_t start = n;
  while (start > 0 && path[start - 1] != '/')
    start--;
  snprintf(buf, size, "%.*s", (int)(n - start), path + start);
  static const char *const exts[] = {".safetensors", ".ckpt", ".pth", ".pt"};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
    if (ends_with(buf, exts[i]) && strlen(buf) > strlen(exts[i])) {
      buf[strlen(buf) - strlen(exts[i])] = '\0';
      break;
    }
}

sdw_status sdw_txt2img_detect_layout(const char *path, sdw_txt2img_layout *out) {
  char buf[4096];
  struct stat sb;
  if (stat(path, &sb) != 0)
    return sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: %s — give %s", path,
                    strerror(errno),
                    "a model folder (diffusers pipeline, UNet folder) or file (.safetensors, .pt)");
  if (S_ISDIR(sb.st_mode)) {
    if ((join(buf, sizeof buf, path, "model_index.json") && is_file(buf)) ||
        (join(buf, sizeof buf, path, "unet") && is_dir(buf))) {
      *out = SDW_TXT2IMG_LAYOUT_DIFFUSERS;
      return SDW_OK;
    }
    if (join(buf, sizeof buf, path, "config.json") && is_file(buf)) {
      *out = SDW_TXT2IMG_LAYOUT_BUNDLE;
      return SDW_OK;
    }
    if (join(buf, sizeof buf, path, "checkpoints/latest") && is_file(buf)) {
      *out = SDW_TXT2IMG_LAYOUT_UNET_FILE; /* an sdw train run: its latest checkpoint */
      return SDW_OK;
    }
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: this folder holds no model (no model_index.json, unet/ or config.json) "
                    "— give a diffusers pipeline, a UNet folder or a model file",
                    path);
  }
  if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".ckpt")) {
    *out = SDW_TXT2IMG_LAYOUT_TORCH;
    return SDW_OK;
  }
  sdw_safetensors *st = NULL;
  SDW_TRY(sdw_safetensors_open(path, &st));
  bool ldm = false;
  for (size_t i = 0; i < sdw_safetensors_count(st) && !ldm; i++)
    ldm = strncmp(sdw_safetensors_at(st, i)->name, "model.diffusion_model.", 22) == 0;
  sdw_safetensors_close(st);
  *out = ldm ? SDW_TXT2IMG_LAYOUT_LDM : SDW_TXT2IMG_LAYOUT_UNET_FILE;
  return SDW_OK;
}

/* Heap-allocated parts while they are being opened. */
typedef struct open_state {
  sdw_tokenizer *tok;
  sdw_clip_text *te;
  sdw_unet *unet;
  sdw_vae *vae;
  bool te_ready, unet_ready, vae_ready;
  char hash_path[4096];
} open_state;

static void open_state_free(open_state *s) {
  if (s->unet_ready) sdw_unet_free(s->unet);
  if (s->vae_ready) sdw_vae_free(s->vae);
  if (s->te_ready) sdw_clip_text_free(s->te);
  free(s->unet);
  free(s->vae);
  free(s->te);
  sdw_tokenizer_free(s->tok);
}

/* The seed's .pt (core/model/seed_checkpoint.h): the EMA shadow or the raw
 * weights; the configuration from the config.json beside the file, else
 * read off the tensors' shapes with the seed's 8 heads. */
static sdw_status open_unet_torch(sdw_ctx *ctx, const char *model, int ema, open_state *s) {
  sdw_seed_checkpoint *ck = NULL;
  SDW_TRY(sdw_seed_checkpoint_open(model, &ck));
  const sdw_seed_state *state = NULL;
  sdw_seed_weights which = ema < 0 ? SDW_SEED_WEIGHTS_AUTO
                           : ema   ? SDW_SEED_WEIGHTS_EMA
                                   : SDW_SEED_WEIGHTS_MODEL;
  sdw_status st = sdw_seed_checkpoint_weights(ck, which, &state);
  char dir[4096], config[4096];
  parent_dir(model, dir, sizeof dir);
  sdw_unet_config cfg;
  if (st == SDW_OK && join(config, sizeof config, dir, "config.json") && is_file(config)) {
    st = sdw_unet_config_from_json(config, &cfg);
  } else if (st == SDW_OK) {
    sdw_seed_shape *shapes = malloc((size_t)(state->count ? state->count : 1) * sizeof *shapes);
    if (!shapes) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
    sdw_seed_unet_args args;
    char json[2048];
    if (st == SDW_OK) {
      sdw_seed_state_shapes(state, shapes);
      st = sdw_seed_infer_unet_args(shapes, state->count, 8, model, &args);
    }
    free(shapes);
    if (st == SDW_OK) {
      int n = sdw_seed_unet_args_json(&args, json, sizeof json);
      st = n < 0 ? sdw_fail(SDW_ERR_INTERNAL, "%s: UNet config too long", model)
                 : sdw_unet_config_parse(json, (size_t)n, model, &cfg);
    }
    if (st == SDW_OK)
      SDW_WARN("%s: no config.json beside it; the UNet's shape is read off the weights, with "
               "the seed's 8 attention heads",
               model);
  }
  if (st == SDW_OK && (st = sdw_unet_create(s->unet, ctx, &cfg)) == SDW_OK) {
    s->unet_ready = true;
    st = sdw_seed_state_load(ck, state, &s->unet->params, false);
  }
  sdw_seed_checkpoint_close(ck);
  return st;
}

/* Opens the UNet of any layout and records the file to hash. */
static sdw_status open_unet(sdw_ctx *ctx, const char *model, sdw_txt2img_layout layout, int ema,
                            open_state *s) {
  sdw_weights *w = NULL;
  sdw_status st = SDW_OK;
  switch (layout) {
  case SDW_TXT2IMG_LAYOUT_BUNDLE:
  case SDW_TXT2IMG_LAYOUT_DIFFUSERS: {
    SDW_TRY(sdw_weights_open(model, "unet", &w));
    sdw_unet_config cfg;
    const char *config = sdw_weights_config_path(w);
    if (!config)
      st = sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: the UNet has no config.json — add the config.json "
                    "that describes its weights",
                    model);
    if (st == SDW_OK) st = sdw_unet_config_from_json(config, &cfg);
    if (st == SDW_OK && (st = sdw_unet_create(s->unet, ctx, &cfg)) == SDW_OK) {
      s->unet_ready = true;
      st = sdw_unet_load_weights(s->unet, w, NULL);
    }
    if (st == SDW_OK)
      snprintf(s->hash_path, sizeof s->hash_path, "%s",
               sdw_safetensors_name(sdw_weights_file(w, 0)));
    break;
  }
  case SDW_TXT2IMG_LAYOUT_UNET_FILE: {
    char dir[4096], config[4096];
    /* an sdw train run directory or checkpoint (core/train/checkpoint.h) */
    if (sdw_checkpoint_resolve(model, config, sizeof config) == SDW_OK &&
        sdw_checkpoint_is(config)) {
      st = sdw_checkpoint_load_unet(s->unet, ctx, model, ema, NULL);
      s->unet_ready = st == SDW_OK;
      snprintf(s->hash_path, sizeof s->hash_path, "%s", config);
      break;
    }
    sdw_clear_error();
    parent_dir(model, dir, sizeof dir);
    if (!join(config, sizeof config, dir, "config.json") || !is_file(config))
      return sdw_fail(SDW_ERR_NOT_FOUND,
                      "%s: no config.json beside these UNet weights — put the UNet's "
                      "config.json in %s",
                      model, dir);
    sdw_unet_config cfg;
    SDW_TRY(sdw_unet_config_from_json(config, &cfg));
    SDW_TRY(sdw_weights_open(model, NULL, &w));
    if ((st = sdw_unet_create(s->unet, ctx, &cfg)) == SDW_OK) {
      s->unet_ready = true;
      st = sdw_unet_load_weights(s->unet, w, NULL);
    }
    snprintf(s->hash_path, sizeof s->hash_path, "%s", model);
    break;
  }
  case SDW_TXT2IMG_LAYOUT_LDM:
    /* frees s->unet itself on failure; configuration: unet/config.json
     * beside the file, else read off a seed UNet, else SD 1.x's */
    st = sdw_unet_open_ldm(s->unet, ctx, model, NULL, ema == 1);
    s->unet_ready = st == SDW_OK;
    snprintf(s->hash_path, sizeof s->hash_path, "%s", model);
    break;
  case SDW_TXT2IMG_LAYOUT_TORCH:
    st = open_unet_torch(ctx, model, ema, s);
    snprintf(s->hash_path, sizeof s->hash_path, "%s", model);
    break;
  }
  sdw_weights_close(w);
  return st;
}

/* Whether the safetensors file at path has a tensor named prefix*. */
static bool ldm_holds(const char *path, const char *prefix) {
  sdw_safetensors *st = NULL;
  if (sdw_safetensors_open(path, &st) != SDW_OK) return false;
  bool found = false;
  for (size_t i = 0; i < sdw_safetensors_count(st) && !found; i++)
    found = strncmp(sdw_safetensors_at(st, i)->name, prefix, strlen(prefix)) == 0;
  sdw_safetensors_close(st);
  return found;
}

/* The part's configuration when it comes from an LDM single file: the
 * diffusers-style <component>/config.json beside the file (as in a Hugging
 * Face repository holding both forms), else NULL: the loader's SD 1.x
 * preset. */
static const char *ldm_part_config(const char *model, const char *component, char *buf,
                                   size_t size) {
  char dir[4096], sub[4096];
  parent_dir(model, dir, sizeof dir);
  if (!join(sub, sizeof sub, dir, component) || !join(buf, size, sub, "config.json") ||
      !is_file(buf))
    return NULL;
  SDW_INFO("%s: %s configuration from %s", model, component, buf);
  return buf;
}

/* Where a part comes from when the user did not say: the model folder's
 * <component>/ subfolder, the sibling folder when the model is a UNet folder
 * inside a diffusers pipeline, the pipeline itself, or the single file. */
/* The text encoder or VAE an sdw train run used (its config.ini), for a run
 * directory or a checkpoint in RUN/checkpoints/. */
/* The train config of the sdw run model is (a run directory or a checkpoint
 * in RUN/checkpoints/) into *c; false when it is not one. */
static bool run_config(const char *model, sdw_train_config *c) {
  char run[4096], ini[4200];
  if (is_dir(model)) {
    snprintf(run, sizeof run, "%s", model);
  } else {
    char ck[4096];
    parent_dir(model, ck, sizeof ck);
    parent_dir(ck, run, sizeof run);
  }
  if (!join(ini, sizeof ini, run, "config.ini") || !is_file(ini)) return false;
  sdw_train_config_defaults(c);
  return sdw_train_config_load(c, ini) == SDW_OK;
}

static bool run_part(const char *model, const char *component, char *buf, size_t size) {
  sdw_train_config *c = malloc(sizeof *c);
  if (!c) return false;
  bool ok = run_config(model, c);
  const char *v = strcmp(component, "vae") == 0 ? c->vae : c->text_encoder;
  ok = ok && v[0] && strcmp(v, "none") != 0;
  if (ok) snprintf(buf, size, "%s", v);
  free(c);
  if (!ok) sdw_clear_error();
  return ok;
}

static bool find_part(const char *model, sdw_txt2img_layout layout, const char *component,
                      char *buf, size_t size) {
  char dir[4096], index[4096];
  switch (layout) {
  case SDW_TXT2IMG_LAYOUT_DIFFUSERS: return join(buf, size, model, component) && is_dir(buf);
  case SDW_TXT2IMG_LAYOUT_LDM:
    /* the file itself when it holds the part (sdw convert's LDM files hold
     * only a UNet) */
    snprintf(buf, size, "%s", model);
    return ldm_holds(model,
                     strcmp(component, "vae") == 0 ? "first_stage_model." : "cond_stage_model.");
  case SDW_TXT2IMG_LAYOUT_BUNDLE:
    if (join(buf, size, model, component) && is_dir(buf)) return true;
    parent_dir(model, dir, sizeof dir);
    return join(index, sizeof index, dir, "model_index.json") && is_file(index) &&
           join(buf, size, dir, component) && is_dir(buf);
  default:
    if (run_part(model, component, buf, size)) return true;
    parent_dir(model, dir, sizeof dir);
    return join(buf, size, dir, component) && is_dir(buf);
  }
}

/* Where each part comes from: enough to open any of them again (low-memory
 * mode reopens parts between uses). */
typedef struct part_recipe {
  char model[4096];
  sdw_txt2img_layout layout;
  int ema;
  char te[4096], te_config[4096]; /* te_config "" = the loader's default */
  char vae[4096], vae_config[4096];
} part_recipe;

static sdw_status open_text_encoder(sdw_ctx *ctx, const part_recipe *r, sdw_clip_text *te) {
  sdw_status st = sdw_clip_text_open(te, ctx, r->te, r->te_config[0] ? r->te_config : NULL);
  if (st != SDW_OK) sdw_error_prefix("text encoder");
  return st;
}

static sdw_status open_vae(sdw_ctx *ctx, const part_recipe *r, sdw_vae *vae) {
  sdw_status st =
      sdw_vae_open(vae, ctx, r->vae, r->vae_config[0] ? r->vae_config : NULL, SDW_VAE_DECODER);
  if (st != SDW_OK) sdw_error_prefix("VAE");
  return st;
}

static sdw_status reload_part(void *user, sdw_ctx *ctx, sdw_txt2img_part part, void **out) {
  const part_recipe *r = user;
  *out = NULL;
  sdw_status st = SDW_OK;
  switch (part) {
  case SDW_TXT2IMG_PART_TEXT_ENCODER: {
    sdw_clip_text *te = calloc(1, sizeof *te);
    if (!te) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
    if ((st = open_text_encoder(ctx, r, te)) != SDW_OK)
      free(te);
    else
      *out = te;
    return st;
  }
  case SDW_TXT2IMG_PART_VAE: {
    sdw_vae *vae = calloc(1, sizeof *vae);
    if (!vae) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
    if ((st = open_vae(ctx, r, vae)) != SDW_OK)
      free(vae);
    else
      *out = vae;
    return st;
  }
  case SDW_TXT2IMG_PART_UNET: {
    open_state s;
    memset(&s, 0, sizeof s);
    if (!(s.unet = calloc(1, sizeof *s.unet)))
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
    st = open_unet(ctx, r->model, r->layout, r->ema, &s);
    if (st != SDW_OK) {
      open_state_free(&s);
      return st;
    }
    *out = s.unet;
    return SDW_OK;
  }
  }
  return sdw_fail(SDW_ERR_INTERNAL, "unknown model part");
}

static sdw_status open_parts(sdw_ctx *ctx, const sdw_txt2img_source *src, open_state *s,
                             part_recipe *r) {
  SDW_TRY(sdw_txt2img_detect_layout(src->model, &r->layout));
  const sdw_txt2img_layout layout = r->layout;
  snprintf(r->model, sizeof r->model, "%s", src->model);
  r->ema = src->ema;
  if (src->text_encoder) {
    snprintf(r->te, sizeof r->te, "%s", src->text_encoder);
  } else if (!find_part(src->model, layout, "text_encoder", r->te, sizeof r->te)) {
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s comes without a text encoder — give --text-encoder PATH (a CLIP text "
                    "model: transformers or diffusers text_encoder folder, or an SD 1.x file)",
                    src->model);
  }
  if (src->vae) {
    snprintf(r->vae, sizeof r->vae, "%s", src->vae);
  } else if (!find_part(src->model, layout, "vae", r->vae, sizeof r->vae)) {
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s comes without a VAE — give --vae PATH (a diffusers vae folder, an "
                    "AutoencoderKL file or an SD 1.x file)",
                    src->model);
  }
  s->unet = calloc(1, sizeof *s->unet);
  s->te = calloc(1, sizeof *s->te);
  s->vae = calloc(1, sizeof *s->vae);
  if (!s->unet || !s->te || !s->vae) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  SDW_TRY(sdw_tokenizer_load(src->vocab, src->tokenizer, &s->tok));
  /* The UNet first: when a file is not the model its configuration says,
   * the UNet's shapes give the clearest message. Low memory opens the text
   * encoder and the VAE first instead (their configurations are needed now)
   * and releases each at once, so the peak while opening is the UNet alone. */
  if (!src->low_memory) SDW_TRY(open_unet(ctx, src->model, layout, src->ema, s));
  const bool ldm = layout == SDW_TXT2IMG_LAYOUT_LDM;
  if (ldm && !src->text_encoder &&
      !ldm_part_config(src->model, "text_encoder", r->te_config, sizeof r->te_config))
    r->te_config[0] = '\0';
  if (ldm && !src->vae && !ldm_part_config(src->model, "vae", r->vae_config, sizeof r->vae_config))
    r->vae_config[0] = '\0';
  SDW_TRY(open_text_encoder(ctx, r, s->te));
  s->te_ready = true;
  if (src->low_memory) sdw_txt2img_part_release(SDW_TXT2IMG_PART_TEXT_ENCODER, s->te);
  SDW_TRY(open_vae(ctx, r, s->vae));
  s->vae_ready = true;
  if (src->low_memory) {
    sdw_txt2img_part_release(SDW_TXT2IMG_PART_VAE, s->vae);
    SDW_TRY(open_unet(ctx, src->model, layout, src->ema, s));
  }
  return SDW_OK;
}

sdw_status sdw_txt2img_open(sdw_ctx *ctx, const sdw_txt2img_source *src, sdw_txt2img **out) {
  *out = NULL;
  SDW_ASSERT(src && src->model);
  open_state s;
  memset(&s, 0, sizeof s);
  part_recipe *recipe = calloc(1, sizeof *recipe);
  if (!recipe) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  sdw_status st = open_parts(ctx, src, &s, recipe);
  sdw_txt2img *p = NULL;
  if (st == SDW_OK) {
    sdw_txt2img_parts parts = {s.tok, s.te, s.unet, s.vae};
    st = sdw_txt2img_create(ctx, &parts, &p);
  }
  if (st != SDW_OK) {
    open_state_free(&s);
    free(recipe);
    return st;
  }
  sdw_txt2img_own_parts(p, true, true, true, true);
  /* an sdw run samples with what it was trained to predict */
  sdw_train_config *tc = malloc(sizeof *tc);
  sdw_prediction_type pt;
  if (tc && run_config(src->model, tc) && sdw_prediction_type_from_name(tc->prediction_type, &pt))
    sdw_txt2img_set_prediction(p, pt);
  free(tc);
  sdw_clear_error();
  if (src->low_memory) {
    sdw_txt2img_set_low_memory(p, reload_part, recipe, free);
    sdw_txt2img_mark_released(p, SDW_TXT2IMG_PART_TEXT_ENCODER);
    sdw_txt2img_mark_released(p, SDW_TXT2IMG_PART_VAE);
    /* the text encoder comes first in every generate call: the UNet is
     * opened again after it (opening it here checked that it loads) */
    sdw_txt2img_part_release(SDW_TXT2IMG_PART_UNET, s.unet);
    sdw_txt2img_mark_released(p, SDW_TXT2IMG_PART_UNET);
  } else {
    free(recipe);
  }
  char name[256];
  model_stem(src->model, name, sizeof name);
  st = sdw_txt2img_set_identity(p, name, src->model_hash && s.hash_path[0] ? s.hash_path : NULL);
  if (st != SDW_OK) {
    sdw_txt2img_free(p);
    return st;
  }
  *out = p;
  return SDW_OK;
}
