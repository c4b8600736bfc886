/* The training engine: the seed's train.py loop (SEED.md 2) over a latent
 * store, one optimizer step at a time, with an exactly resumable state.
 *
 * One step (sdw_trainer_step) at (epoch e, position p):
 *   for k in 0 .. grad_accum-1: micro-batch b = p * grad_accum + k of epoch e
 *     (core/train/data_loader.h), latents f16 -> f32, contexts from the
 *     frozen CLIP (the seed passes the tokenizer's attention mask to CLIP;
 *     SD 1.x topologies do not) or from the store's stored contexts; loss
 *     draws (timesteps, dropout coins, noise, offsets) of the whole global
 *     micro-batch from the Philox stream (seed, subsequence 0x6e6f697365),
 *     the same on every rank, each rank keeping its slice (so W ranks with
 *     batch B compute what one rank with batch W*B does); the stream's
 *     offset is part of the state; x_t, caption dropout to the empty-prompt
 *     embedding (computed once), Min-SNR weights, forward_train (with
 *     per-ResBlock checkpointing when grad_ckpt), loss and backward,
 *     gradients accumulated;
 *   gradients averaged over ranks (core/train/allreduce.h), the loss summed;
 *   optimizer (core/train/optimizer.h: clip, AdamW, EMA) at
 *   lr = schedule(step) (core/train/lr_schedule.h); a non-finite loss or
 *   gradient skips the update (the data and noise are still consumed) and
 *   counts toward max_nonfinite in a row.
 * An epoch has floor(batches per rank / grad_accum) optimizer steps
 * (leftover micro-batches are dropped with the partial batch); the run has
 * epochs x that many (total_steps), or max_steps when smaller.
 *
 * Everything a later step depends on is in the checkpoint (checkpoint.h),
 * so N steps, a checkpoint, a new process resuming from it and N more steps
 * give the same bits as 2N steps in one go (same machine, same threads).
 *
 * Ownership: the trainer borrows cfg for its lifetime, owns everything it
 * opens; not thread-safe (one thread drives it).
 */
#ifndef SDW_TRAIN_TRAINER_H
#define SDW_TRAIN_TRAINER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/model/params.h"
#include "core/train/allreduce.h"
#include "core/train/checkpoint.h"
#include "core/train/train_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_trainer sdw_trainer;

/* Opens the stores, the text encoder and the model (random init from seed,
 * or cfg->init), the optimizer. ar is borrowed (NULL: a single process).
 * log receives progress lines (may be NULL). */
typedef void (*sdw_trainer_log_fn)(void *user, int level, const char *message);
sdw_status sdw_trainer_create(const sdw_train_config *cfg, sdw_allreduce *ar,
                              sdw_trainer_log_fn log, void *log_user, sdw_trainer **out);
void sdw_trainer_free(sdw_trainer *t);

typedef struct sdw_trainer_report {
  int64_t step, epoch, position; /* after the step */
  double loss;                   /* the step's loss (mean over ranks) */
  double lr, grad_norm;
  double step_ms, img_per_s;
  bool skipped;          /* non-finite: no update */
  int64_t nonfinite_run; /* skipped steps in a row */
  bool epoch_end;        /* this step finished an epoch */
} sdw_trainer_report;

/* One optimizer step. SDW_ERR_INVALID_ARGUMENT when the run is done. */
sdw_status sdw_trainer_step(sdw_trainer *t, sdw_trainer_report *r);

/* *flag = rank 0's *flag on every rank (a broadcast; no-op for one rank). */
sdw_status sdw_trainer_sync_flag(sdw_trainer *t, int *flag);

/* State. */
bool sdw_trainer_done(const sdw_trainer *t);
int64_t sdw_trainer_global_step(const sdw_trainer *t);
int64_t sdw_trainer_epoch(const sdw_trainer *t);
int64_t sdw_trainer_total_steps(const sdw_trainer *t);
int64_t sdw_trainer_steps_per_epoch(const sdw_trainer *t);
int64_t sdw_trainer_nonfinite_run(const sdw_trainer *t);
int sdw_trainer_rank(const sdw_trainer *t);
int sdw_trainer_world(const sdw_trainer *t);
/* Samples per optimizer step over all ranks. */
int64_t sdw_trainer_step_samples(const sdw_trainer *t);
/* The UNet's parameters and the four state buffers (host on the CPU
 * backend; ema NULL without EMA). For tests and all-reduce checks. */
const sdw_params *sdw_trainer_params(const sdw_trainer *t);
void sdw_trainer_buffers(const sdw_trainer *t, sdw_checkpoint_buffers *b);
/* The UNet config.json text and the resolved config text. */
const char *sdw_trainer_unet_json(const sdw_trainer *t);

/* Writes the state to path (atomically) / restores it from an open,
 * validated checkpoint (sdw_checkpoint_open). */
sdw_status sdw_trainer_save(sdw_trainer *t, const char *path);
sdw_status sdw_trainer_restore(sdw_trainer *t, const sdw_safetensors *ck,
                               const sdw_checkpoint_state *s);

/* Validation loss over the val store (EMA weights when kept) with fixed
 * draws (val_seed): the same number every call for the same weights.
 * SDW_ERR_NOT_FOUND without val_data. */
sdw_status sdw_trainer_val_loss(sdw_trainer *t, double *loss);

/* Images with the EMA weights (raw when !ema or no EMA): jobs as txt2img's,
 * rgb[count][h][w][3]; *w, *h receive the size; infotext[count] (malloc'd
 * each, caller frees) may be NULL. With vae = pixels there is no VAE: the
 * sampler's final x0 in [-1, 1] is the image (txt2img's pixel-space
 * pipeline, the same [-1, 1] -> RGB8 rule as after a VAE), at the store's
 * size. SDW_ERR_UNSUPPORTED without a vae or a text encoder. */
sdw_status sdw_trainer_sample(sdw_trainer *t, const char *const *prompts,
                              const char *const *negatives, const uint64_t *seeds, int count,
                              int steps, double cfg_scale, bool ema, const atomic_int *cancel,
                              uint8_t **rgb, int *width, int *height, char **infotext);

/* What a latent store's index.json says: what encoded it (its "vae":
 * "pixels" for a pixel-space store, `sdw pipeline encode --vae pixels`; ""
 * when the index does not say) into vae[size], and the latents' height and
 * width (the image size of a pixel-space store). Reads index.json only. */
sdw_status sdw_trainer_store_origin(const char *dir, char *vae, size_t size, int *height,
                                    int *width);

/* --- the job: a run directory around the engine (trainer_run.c) ------------ */

typedef struct sdw_trainer_run_options {
  const char *config_text; /* the resolved config (written to RUN/config.ini) */
  bool quiet;              /* no progress lines on stderr */
  /* set (nonzero) by the caller's SIGINT/SIGTERM handler: checkpoint, stop */
  const atomic_int *interrupt;
} sdw_trainer_run_options;

/* Runs (or resumes: RUN/checkpoints) the job described by cfg in run_dir,
 * with job.json, metrics.jsonl, events.log, TensorBoard events, checkpoints,
 * validation, samples and the control socket (sdw-formats(5), sdw-ctl(1)).
 * SIGINT / SIGTERM / stop: checkpoint, state "stopped", SDW_ERR_INTERRUPTED.
 * A finished run returns SDW_OK (state "finished"). */
sdw_status sdw_trainer_run(const sdw_train_config *cfg, const char *run_dir,
                           const sdw_trainer_run_options *opt);

#ifdef __cplusplus
}
#endif
#endif
