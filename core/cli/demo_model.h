/* What `sdw eval` and `sdw demo` sample from: a trainer checkpoint of a
 * pixel-space model (core/train/checkpoint.h; the UNet's config.json and the
 * run's config are in its metadata) with the frozen text encoder the run
 * names, as a txt2img pipeline without a VAE. Or the same architecture
 * untrained (the trainer's random initialisation), the baseline of eval. */
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
  bool te_ok, unet_ok;
  sdw_txt2img *pipe;
  int64_t step;          /* the checkpoint's optimizer steps (0 untrained) */
  bool ema;              /* the EMA weights were loaded */
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

/* The checkpoint a run directory's checkpoints/latest names, into buf;
 * SDW_ERR_NOT_FOUND when there is none yet. */
sdw_status sdw_demo_latest_checkpoint(const char *run, char *buf, size_t size);

/* Writes count RGB images of side x side in one row, each scaled up by an
 * integer factor (nearest: the pixels stay visible), with 2 white pixels
 * between them, as a PNG with the given infotext ("parameters"). */
sdw_status sdw_demo_write_grid(const char *path, const uint8_t *rgb, int count, int side, int scale,
                               const char *infotext);

#endif
