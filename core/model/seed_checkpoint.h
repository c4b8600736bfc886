/* The seed project's training checkpoints (torch.save .pt files, SEED.md
 * §1.7-1.8, §2.9) read through the restricted unpickler of
 * core/base/torch_pickle.h: nothing in the file is ever executed.
 *
 * A checkpoint is the dict
 *   {epoch, global_step, best_loss, unet_state_dict, optimizer_state_dict,
 *    lr_scheduler_state_dict, ema_state_dict: {shadow, step_count, decay}}
 * whose tensors are fp32 and, for 4-D convolution weights, usually stored
 * with channels_last strides (read back in row-major order here). Older and
 * other layouts are accepted as the seed's own loaders accept them: a
 * legacy "model_state_dict" (keys "unet.*" beside other components), a
 * "state_dict", or a bare state dict (a dict of tensors at the top).
 *
 * Weight names are normalised the way the seed's loaders do: leading
 * "module." (DataParallel/DDP), "_orig_mod." (torch.compile),
 * "_fsdp_wrapped_module." (FSDP) are stripped, repeatedly; when some keys
 * start with "unet." only those are kept, with the prefix stripped (the
 * legacy whole-model dict and the old EMA's "unet._orig_mod.downs..." keys).
 * Two keys that become the same name are SDW_ERR_FORMAT. Entries that are
 * not tensors are skipped.
 *
 * The result is a list of (native name -> tensor view), which can
 *  - fill a parameter set by native name (sdw_seed_state_load: what the seed
 *    UNet of core/model/unet.h needs, with no copy of the whole checkpoint);
 *  - become an in-memory safetensors image (sdw_seed_state_image), which
 *    sdw_safetensors_open_memory opens: the way to feed a .pt to anything
 *    built on core/model/weights.h;
 *  - be written out by `sdw convert` (core/cli/cmd_convert.c).
 * The training scalars and the AdamW moments are there for resuming a seed
 * run (issue 5).
 */
#ifndef SDW_MODEL_SEED_CHECKPOINT_H
#define SDW_MODEL_SEED_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/torch_pickle.h"
#include "core/model/params.h"
#include "core/model/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_seed_checkpoint sdw_seed_checkpoint;

/* Which weights to take. */
typedef enum sdw_seed_weights {
  SDW_SEED_WEIGHTS_AUTO = 0, /* the EMA shadow when there is one, else the model's */
  SDW_SEED_WEIGHTS_EMA,      /* ema_state_dict.shadow (SDW_ERR_NOT_FOUND without it) */
  SDW_SEED_WEIGHTS_MODEL,    /* unet_state_dict, model_state_dict, state_dict or a bare dict */
} sdw_seed_weights;

/* One tensor of a state dict. Owned by the checkpoint. */
typedef struct sdw_seed_tensor {
  const char *name; /* native name, prefixes stripped */
  const char *key;  /* the key as stored */
  const sdw_pt_tensor *tensor;
} sdw_seed_tensor;

/* A state dict: tensors in the file's order. Owned by the checkpoint. */
typedef struct sdw_seed_state {
  const char *source; /* "ema_state_dict.shadow", "unet_state_dict", ... */
  sdw_seed_tensor *items;
  int count;
  size_t *sorted; /* internal: item indices by name */
} sdw_seed_state;

/* What a checkpoint says about its training run; has_* false when absent. */
typedef struct sdw_seed_info {
  bool has_epoch, has_global_step, has_best_loss, has_ema, has_optimizer, has_scheduler;
  int64_t epoch, global_step;
  double best_loss;
  int64_t ema_step_count; /* ema_state_dict.step_count */
  double ema_decay;       /* ema_state_dict.decay */
  /* optimizer_state_dict.param_groups[0] */
  double lr, initial_lr, beta1, beta2, eps, weight_decay;
  int64_t scheduler_last_epoch; /* lr_scheduler_state_dict.last_epoch */
} sdw_seed_info;

/* Opens path (a torch.save zip) and reads its structure; tensor data is read
 * only when asked for. *out is owned by the caller (sdw_seed_checkpoint_close).
 * Errors as sdw_pt_open reports them (a refused global is SDW_ERR_FORMAT),
 * and SDW_ERR_FORMAT when the top level is not a dict. */
sdw_status sdw_seed_checkpoint_open(const char *path, sdw_seed_checkpoint **out);
void sdw_seed_checkpoint_close(sdw_seed_checkpoint *c);

const char *sdw_seed_checkpoint_name(const sdw_seed_checkpoint *c);
/* The unpickled tree (for anything not covered here). */
sdw_pt *sdw_seed_checkpoint_pt(sdw_seed_checkpoint *c);
const sdw_seed_info *sdw_seed_checkpoint_info(const sdw_seed_checkpoint *c);

/* The weights chosen by which; *out is owned by c. SDW_ERR_NOT_FOUND when
 * the checkpoint has no such state dict (the message lists its top-level
 * keys), SDW_ERR_FORMAT for colliding names. */
sdw_status sdw_seed_checkpoint_weights(sdw_seed_checkpoint *c, sdw_seed_weights which,
                                       const sdw_seed_state **out);

/* The AdamW moments, named and ordered like the model weights
 * (unet_state_dict): the optimizer keys its state by parameter index, in
 * the order of param_groups' "params", which is the model's parameter
 * order. *step receives the per-parameter step count of the first
 * parameter (a 0-dim tensor or a number in the file). The states are owned
 * by c. SDW_ERR_NOT_FOUND without optimizer state, SDW_ERR_FORMAT when it
 * does not match the model (count or shapes). */
sdw_status sdw_seed_checkpoint_adam(sdw_seed_checkpoint *c, const sdw_seed_state **exp_avg,
                                    const sdw_seed_state **exp_avg_sq, double *step);

/* By native name; NULL when absent. */
const sdw_seed_tensor *sdw_seed_state_find(const sdw_seed_state *s, const char *name);

/* The tensor's elements as f32 in row-major order into dst[numel] (F32 read
 * as is, F16 / BF16 / F64 converted; integer dtypes SDW_ERR_UNSUPPORTED). */
sdw_status sdw_seed_tensor_read_f32(sdw_seed_checkpoint *c, const sdw_seed_tensor *t, float *dst,
                                    size_t numel);

/* Fills every parameter of params (allocated: binding pass done) with the
 * tensor of the same native name, converted to f32 and uploaded through
 * params->ctx->ops->upload, marking each loaded. Everything is checked
 * before anything is written: every parameter present (SDW_ERR_NOT_FOUND
 * naming the first missing one and the count), every shape equal
 * (SDW_ERR_FORMAT naming both shapes), and, unless allow_extra, no tensor
 * left over (SDW_ERR_FORMAT naming it: the checkpoint holds a different
 * model than the configuration describes). */
sdw_status sdw_seed_state_load(sdw_seed_checkpoint *c, const sdw_seed_state *s, sdw_params *params,
                               bool allow_extra);

/* A complete safetensors file in memory: tensors in the state's order, names
 * prefix + native name, converted to dtype (SDW_F32, SDW_F16 or SDW_BF16;
 * rounding to nearest even), __metadata__ {"format": "pt"}. *image is
 * malloc'd (free()); open it with sdw_safetensors_open_memory. */
sdw_status sdw_seed_state_image(sdw_seed_checkpoint *c, const sdw_seed_state *s, const char *prefix,
                                sdw_dtype dtype, void **image, size_t *size);

/* The seed UNetModel's constructor arguments (SEED.md §1.1). */
typedef struct sdw_seed_unet_args {
  int in_ch, out_ch, ch, res_blks, heads, t_dim, ctx_dim;
  int levels;
  int ch_mults[SDW_UNET_MAX_LEVELS];
  bool attn[SDW_UNET_MAX_LEVELS]; /* level in attn_lvls */
} sdw_seed_unet_args;

/* A tensor's name and shape, whatever holds it (a checkpoint, a
 * safetensors file): what the two functions below look at. */
typedef struct sdw_seed_shape {
  const char *name;
  int ndim;
  const int64_t *shape;
} sdw_seed_shape;

/* The state's names and shapes into out[s->count] (pointers into s). */
void sdw_seed_state_shapes(const sdw_seed_state *s, sdw_seed_shape *out);

/* Reads the constructor arguments off the tensors' names and shapes. The
 * number of heads is not in the weights: heads is used (the seed trains
 * with 8). SDW_ERR_FORMAT naming what is off when the tensors are not a
 * seed UNet's (what names them in the message). */
sdw_status sdw_seed_infer_unet_args(const sdw_seed_shape *items, int count, int heads,
                                    const char *what, sdw_seed_unet_args *out);
/* config.json text {"_class_name": "SeedUNetModel", ...} into buf[cap]
 * (NUL-terminated); the length, or -1 when it does not fit. */
int sdw_seed_unet_args_json(const sdw_seed_unet_args *a, char *buf, size_t cap);

/* Checks that the tensors are exactly the parameters of a UNet of
 * configuration cfg (names and shapes, nothing more, nothing less).
 * SDW_ERR_FORMAT naming the first difference (what names the tensors'
 * origin in the message). */
sdw_status sdw_seed_match_unet(const sdw_seed_shape *items, int count, const sdw_unet_config *cfg,
                               const char *what);

#ifdef __cplusplus
}
#endif
#endif
