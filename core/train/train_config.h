/* The training configuration: every key of `sdw train --config FILE`
 * (documented in sdw.conf(5)), with the seed's train.py defaults.
 *
 * File format (INI): `key = value` lines, `#` or `;` comments, blank lines,
 * and `[section]` headers, which only group keys for the reader (a key means
 * the same in any section and may appear once). Booleans are true/false,
 * on/off, yes/no, 1/0. An unknown key, a repeated key or a bad value is
 * SDW_ERR_INVALID_ARGUMENT naming FILE:LINE. Overrides (`--set key=value`)
 * are applied after the file, with the same checks.
 *
 * The table of keys lives in train_config.c (one row per key: name, type,
 * default, one-line help); sdw_train_config_write prints every key with its
 * value, which is what RUN/config.ini holds.
 */
#ifndef SDW_TRAIN_TRAIN_CONFIG_H
#define SDW_TRAIN_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/base/status.h"
#include "core/model/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SDW_TRAIN_PATH_MAX = 1024 };
enum { SDW_TRAIN_VAL_PROMPTS_MAX = 16, SDW_TRAIN_VAL_PROMPTS_BYTES = 4096 };

typedef struct sdw_train_config {
  /* model and data */
  char model[SDW_TRAIN_PATH_MAX]; /* preset (seed, seed-tiny), "custom", or a config.json */
  int unet_ch, unet_res_blks, unet_heads, unet_t_dim, unet_ctx_dim; /* model = custom */
  char unet_ch_mults[64], unet_attn_lvls[64];                       /* "1,2,4,4", "1,2,3" */
  char init[SDW_TRAIN_PATH_MAX];         /* "" random init, or UNet weights to start from */
  char unet_zero_init[8];                /* seed | ldm: zero-initialised modules of a random init */
  char train_data[SDW_TRAIN_PATH_MAX];   /* latent store directory (required) */
  char val_data[SDW_TRAIN_PATH_MAX];     /* latent store for validation loss ("" none) */
  char text_encoder[SDW_TRAIN_PATH_MAX]; /* CLIP folder, or "none": stored contexts */
  char vae[SDW_TRAIN_PATH_MAX];          /* VAE for validation grids and samples ("" none,
                                            "pixels": a pixel-space model, no VAE) */
  char vocab[SDW_TRAIN_PATH_MAX];        /* BPE vocabulary for samples ("" default) */
  /* the seed's flags */
  int batch_size, grad_accum, epochs;
  int64_t max_steps; /* stop after this many optimizer steps (0: the epochs decide) */
  double lr, weight_decay;
  int64_t warmup;
  bool min_snr;
  double min_snr_gamma, cfg_dropout, noise_offset;
  char prediction_type[16]; /* epsilon | v_prediction | sample */
  bool grad_ckpt;
  int save_every;     /* epochs between epoch checkpoints */
  int64_t save_steps; /* optimizer steps between step checkpoints (0 off) */
  int val_every;      /* epochs between validations (0 off) */
  /* optimizer */
  double beta1, beta2, adam_eps, max_grad_norm;
  bool decay_norms_and_biases;
  bool ema;
  double ema_decay;
  char lr_after_end[16]; /* hold | periodic */
  /* run management */
  uint64_t seed;
  int keep_last;      /* newest checkpoints kept */
  int64_t keep_every; /* also keep checkpoints whose step is a multiple of this (0 off) */
  int log_every;      /* optimizer steps between metrics lines */
  int max_nonfinite;  /* consecutive skipped steps that stop the run */
  int val_steps;      /* DDIM steps of validation grids */
  char val_prompts[SDW_TRAIN_VAL_PROMPTS_BYTES]; /* '|'-separated ("" the seed's four) */
  double val_cfg;
  uint64_t val_seed;
  int sample_steps; /* defaults of on-request samples */
  double sample_cfg;
  int threads;         /* 0: OMP_NUM_THREADS or all cores */
  char allreduce[16];  /* auto | single | mpi | tcp */
  int local_ranks;     /* > 1: sdw train starts this many ranks here (core/cli/local_ranks.h) */
  int arena_gb;        /* activation arena reservation */
  int64_t val_batches; /* micro-batches of the validation loss (0: the whole store) */
} sdw_train_config;

/* The defaults (the seed's where it has one). train_data is empty. */
void sdw_train_config_defaults(sdw_train_config *c);

/* Applies one key = value (name is used in messages, e.g. "run.ini:12" or
 * "--set"). */
sdw_status sdw_train_config_set(sdw_train_config *c, const char *key, const char *value,
                                const char *where);

/* Reads an INI file on top of *c. Keys may appear once per file. */
sdw_status sdw_train_config_load(sdw_train_config *c, const char *path);
/* The same from text (name for messages). */
sdw_status sdw_train_config_parse(sdw_train_config *c, const char *text, size_t size,
                                  const char *name);

/* True when vae = pixels: the model denoises the RGB images themselves
 * (a pixel-space latent store, `sdw pipeline encode --vae pixels`). */
bool sdw_train_config_pixels(const sdw_train_config *c);

/* The validation grid's prompts: val_prompts split at '|', each with its
 * surrounding spaces removed, or the seed's four (SEED.md 2.7) when
 * val_prompts is empty. buf[size] (at least SDW_TRAIN_VAL_PROMPTS_BYTES)
 * holds the split copy; prompts[SDW_TRAIN_VAL_PROMPTS_MAX] receive pointers
 * into it or to static strings, *count how many (1..16).
 * SDW_ERR_INVALID_ARGUMENT for an empty prompt or more than 16. */
sdw_status sdw_train_config_val_prompts(const sdw_train_config *c, char *buf, size_t size,
                                        const char **prompts, int *count);

/* Cross-field checks (required keys, ranges): SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_train_config_validate(const sdw_train_config *c);

/* Every key with its value as INI text (malloc'd, caller frees). */
char *sdw_train_config_format(const sdw_train_config *c);

/* The UNet configuration the config names (a preset, custom keys or a
 * config.json), and its config.json text for exports and checkpoints
 * (malloc'd; the seed's UNetModel kwargs for seed topologies, the file's
 * text for a config.json path). */
sdw_status sdw_train_config_unet(const sdw_train_config *c, sdw_unet_config *out, char **json);

/* For --help and the man page test: key names, one-line help and default
 * text of row i (false past the end). */
bool sdw_train_config_key(int i, const char **name, const char **help, const char **def);

#ifdef __cplusplus
}
#endif
#endif
