/* What `sdw eval`, `sdw demo` and `sdw sample` (for a pixel-space run)
 * sample from: a trainer checkpoint (core/train/checkpoint.h; the UNet's
 * config.json and the run's config are in its metadata) with the frozen
 * text encoder the run names, as a txt2img pipeline: without a VAE for a
 * pixel-space run (vae = pixels), with the decoder of the run's vae
 * otherwise. Or the same architecture untrained (the trainer's
 * random initialisation), the baseline of eval. */
#ifndef SDW_CLI_DEMO_MODEL_H
#define SDW_CLI_DEMO_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/diffusion/txt2img.h"

typedef struct sdw_demo_model {
  sdw_ctx *ctx; /* owned */
  sdw_tokenizer *tok;
  sdw_clip_text te;
  sdw_unet unet;
  sdw_vae vae; /* the run's VAE decoder (a latent-space run, e.g. the demo's
                  trained tiny VAE); unused in pixel space */
  bool te_ok, unet_ok, vae_ok;
  sdw_txt2img *pipe;
  int64_t step;          /* the checkpoint's optimizer steps (0 untrained) */
  bool ema;              /* the EMA weights were loaded */
  double sample_cfg;     /* the run's sample_cfg (7.5, its default, when absent) */
  char checkpoint[4096]; /* the file read */
} sdw_demo_model;

/* path: a run directory (its checkpoints/latest) or a checkpoint file.
 * text_encoder: NULL = the one in the run's config. ema: -1 EMA when the
 * checkpoint has it, 0 raw, 1 EMA. untrained: ignore the weights and use
 * the trainer's random init of seed init_seed. *m is filled (close with
 * sdw_demo_model_close also on failure). */
sdw_status sdw_demo_model_open(const char *path, const char *text_encoder, int ema, bool untrained,
                               uint64_t init_seed, sdw_demo_model *m);
void sdw_demo_model_close(sdw_demo_model *m);

/* sdw_demo_model_open with everything: NULL / 0 members take the defaults
 * of sdw_demo_model_open (text encoder and vocabulary: the run's config;
 * ema -1 as there). */
typedef struct sdw_demo_model_options {
  const char *text_encoder; /* NULL: the run's text_encoder */
  const char *vocab;        /* NULL: the run's vocab, else the one shipped with sdw */
  sdw_tokenizer_mode tokenizer;
  int ema;
  bool untrained;
  uint64_t init_seed;
  bool model_hash; /* name the model (path's stem) and hash the checkpoint for infotexts */
} sdw_demo_model_options;
sdw_status sdw_demo_model_open_with(const char *path, const sdw_demo_model_options *o,
                                    sdw_demo_model *m);

/* What a run directory or checkpoint file is, from the checkpoint's metadata
 * (a run without a checkpoint yet: its config.ini) and the train_data
 * store's index.json. */
typedef struct sdw_demo_model_info {
  bool pixels;       /* the run's config says vae = pixels */
  int width, height; /* the training images' size (0: the store cannot be read) */
  char train_data[4096];
} sdw_demo_model_info;
/* SDW_ERR_NOT_FOUND / SDW_ERR_FORMAT when path is not an sdw run or
 * training checkpoint. */
sdw_status sdw_demo_model_probe(const char *path, sdw_demo_model_info *out);

/* The value of "key = value" in a run's config text (RUN/config.ini, or a
 * checkpoint's "config" metadata) into out; "" when the key is absent. */
void sdw_run_config_value(const char *text, const char *key, char *out, size_t size);

/* The checkpoint a run directory's checkpoints/latest names, into buf;
 * SDW_ERR_NOT_FOUND when there is none yet. */
sdw_status sdw_demo_latest_checkpoint(const char *run, char *buf, size_t size);

/* Writes count RGB images of side x side in one row, each scaled up by an
 * integer factor (nearest: the pixels stay visible), with 2 white pixels
 * between them, as a PNG with the given infotext ("parameters"). */
sdw_status sdw_demo_write_grid(const char *path, const uint8_t *rgb, int count, int side, int scale,
                               const char *infotext);

#endif
