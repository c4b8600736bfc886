/* Training checkpoints: one safetensors file per checkpoint holding the
 * whole state of a run, and the checkpoints/ folder around them.
 *
 * File (documented in sdw-formats(5)): for every UNet parameter NAME (native
 * names) four F32 tensors "model.NAME", "ema.NAME" (when the run keeps an
 * EMA), "adam_m.NAME", "adam_v.NAME"; __metadata__ (strings):
 *   format "sdw-checkpoint/1", sdw_version, step (optimizer steps done),
 *   epoch, position (optimizer steps done within epoch), optimizer_step,
 *   ema_updates, rng_seed, rng_offset (the loss-noise Philox stream's next
 *   element), nonfinite_run, lr (of the last update), total_steps,
 *   world_size, time, config (the resolved INI text), unet_config (the
 *   UNet's config.json text), and sha256.model / sha256.ema / sha256.adam_m
 *   / sha256.adam_v: SHA-256 of that set's tensor bytes in parameter order,
 *   checked on open, so a damaged file is never resumed from.
 * The file is written atomically (temp, fsync, rename, directory fsync).
 *
 * Folder: checkpoints/step-%08lld.safetensors, plus "latest", a text file
 * naming the newest complete checkpoint, rewritten atomically after it.
 */
#ifndef SDW_TRAIN_CHECKPOINT_H
#define SDW_TRAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/safetensors.h"
#include "core/base/status.h"
#include "core/model/params.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDW_CHECKPOINT_FORMAT "sdw-checkpoint/1"

typedef struct sdw_checkpoint_state {
  int64_t step, epoch, position;
  int64_t optimizer_step, ema_updates;
  uint64_t rng_seed, rng_offset;
  int64_t nonfinite_run;
  double lr;
  int64_t total_steps;
  int world_size;
} sdw_checkpoint_state;

/* The four flat sets, host memory laid out as params (offsets of
 * params->items); ema may be NULL. */
typedef struct sdw_checkpoint_buffers {
  float *model, *ema, *adam_m, *adam_v;
} sdw_checkpoint_buffers;

/* Writes path atomically. config and unet_config are stored as text. */
sdw_status sdw_checkpoint_write(const char *path, const sdw_params *params,
                                const sdw_checkpoint_buffers *b, const sdw_checkpoint_state *s,
                                const char *config, const char *unet_config);

/* Opens and validates a checkpoint (format, every tensor of params present
 * with its shape, the SHA-256 of every set): SDW_ERR_FORMAT naming the file
 * and the problem. On success *out is open (sdw_safetensors_close) and
 * *state filled. */
sdw_status sdw_checkpoint_open(const char *path, const sdw_params *params,
                               sdw_checkpoint_state *state, sdw_safetensors **out);

/* Copies the sets out of an open checkpoint into b (NULL members skipped;
 * ema requested but absent is SDW_ERR_FORMAT). */
sdw_status sdw_checkpoint_read(const sdw_safetensors *ck, const sdw_params *params,
                               const sdw_checkpoint_buffers *b);

/* The checkpoint of step in dir: dir/step-%08lld.safetensors into buf. */
void sdw_checkpoint_path(const char *dir, int64_t step, char *buf, size_t size);

/* Points dir/latest at the file name (atomically). */
sdw_status sdw_checkpoint_set_latest(const char *dir, const char *file_name);

/* The checkpoint files of dir (step-*.safetensors), newest first, as
 * malloc'd names (sdw_list_files_free). */
sdw_status sdw_checkpoint_list(const char *dir, char ***names, int *count);

/* Finds the newest checkpoint of dir that validates: the one "latest" names,
 * else (with a warning through warn) the newest other that does. path[size]
 * receives it; SDW_ERR_NOT_FOUND when there is none (a fresh run). warn may
 * be NULL. On success *out is the open checkpoint and *state its state. */
typedef void (*sdw_checkpoint_warn_fn)(void *user, const char *message);
sdw_status sdw_checkpoint_find_resume(const char *dir, const sdw_params *params, char *path,
                                      size_t size, sdw_checkpoint_state *state,
                                      sdw_safetensors **out, sdw_checkpoint_warn_fn warn,
                                      void *user);

/* Deletes checkpoints beyond the newest keep_last, except those whose step
 * is a multiple of keep_every (> 0) and the one "latest" names; also removes
 * temporaries left by killed writers (".step-*.tmp.<pid>" whose process is
 * gone). */
sdw_status sdw_checkpoint_prune(const char *dir, int keep_last, int64_t keep_every);

/* For samplers: path is a run directory (its checkpoints/latest), or a
 * checkpoint file; the file's path into buf[size]. SDW_ERR_NOT_FOUND when a
 * run directory has no latest. */
sdw_status sdw_checkpoint_resolve(const char *path, char *buf, size_t size);

/* True when path (a file) is an sdw training checkpoint (reads the header). */
bool sdw_checkpoint_is(const char *path);

/* Creates m on ctx from a checkpoint (a run directory or a file): its
 * unet_config and the EMA weights (ema 1), the raw ones (ema 0) or the EMA
 * when present (ema -1). Free with sdw_unet_free. *used_ema (may be NULL)
 * tells which. */
struct sdw_unet;
sdw_status sdw_checkpoint_load_unet(struct sdw_unet *m, sdw_ctx *ctx, const char *path, int ema,
                                    bool *used_ema);

#ifdef __cplusplus
}
#endif
#endif
