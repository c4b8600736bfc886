/* Weight loading: fills a parameter set (core/model/params.h) from the
 * safetensors files that users download, whatever their layout.
 *
 * Two steps:
 *
 *  1. sdw_weights_open resolves a path to a set of memory-mapped files:
 *       - a .safetensors file (a transformers file, an LDM single-file
 *         checkpoint, a golden weights file);
 *       - a folder holding one of model.safetensors,
 *         diffusion_pytorch_model.safetensors, weights.safetensors (a golden
 *         bundle), their sharded forms <name>.index.json (whose weight_map
 *         lists the shards) or the diffusers fp16 variants
 *         model.fp16.safetensors / diffusion_pytorch_model.fp16.safetensors;
 *       - a diffusers pipeline folder, where the same names are looked up in
 *         the component's subfolder (component = "text_encoder", "vae", ...).
 *     It also remembers the config.json next to the weights (the folder's or
 *     the component subfolder's), so models can read their configuration.
 *     Mapping reads nothing: only the tensors a model asks for are ever
 *     touched, so the vision tower of a full CLIPModel file or the UNet of an
 *     LDM checkpoint costs address space, not memory or disk reads.
 *
 *  2. sdw_weights_load fills every parameter of a set through a key map that
 *     turns a native parameter name into the file's key: a list of prefixes
 *     to try ("text_model.", "cond_stage_model.transformer.text_model.", ...;
 *     the prefix under which most parameters are found is used for all of
 *     them, so two layouts are never mixed) and either a table of substring
 *     rewrites or a callback for layouts whose names differ structurally
 *     (LDM vs diffusers UNets). Every shape is checked before anything is
 *     copied; F32, F16, BF16 and F64 tensors are converted to f32 on the fly
 *     and uploaded through ctx->ops->upload, so device parameter sets load
 *     the same way.
 *
 * Errors (one sentence, naming the file):
 *   SDW_ERR_NOT_FOUND  "<file>: tensor 'text_model.final_layer_norm.bias' is
 *                       missing (and 3 more of the 36 tensors the model
 *                       needs); ..."
 *   SDW_ERR_FORMAT     "<file>: tensor 'text_model.encoder.layers.0.self_attn.
 *                       q_proj.weight' has shape [64, 32], expected [64, 64]"
 *   SDW_ERR_UNSUPPORTED a tensor whose dtype is not a float type.
 */
#ifndef SDW_MODEL_WEIGHTS_H
#define SDW_MODEL_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/safetensors.h"
#include "core/base/status.h"
#include "core/model/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A set of open weight files. Owned by the caller (sdw_weights_close). */
typedef struct sdw_weights sdw_weights;

/* Resolves path as described above and maps its files. component is the
 * diffusers subfolder to look in when path is a pipeline folder (NULL: none).
 * SDW_ERR_NOT_FOUND when path does not exist or a folder holds no weights
 * (the message lists the names looked for); errors of the files themselves
 * as sdw_safetensors_open / sdw_json_load_file report them. */
sdw_status sdw_weights_open(const char *path, const char *component, sdw_weights **out);

/* Maps exactly the given files (no resolution); name is used in messages
 * about keys that are missing from all of them (copied). */
sdw_status sdw_weights_open_files(const char *const *paths, int count, const char *name,
                                  sdw_weights **out);

/* Unmaps everything; NULL is a no-op. */
void sdw_weights_close(sdw_weights *w);

/* The config.json found beside the weights, or NULL when there is none (a
 * lone file, or sdw_weights_open_files). Owned by w. */
const char *sdw_weights_config_path(const sdw_weights *w);
/* What the files came from, for messages: the file, the index or the path
 * given. Owned by w. */
const char *sdw_weights_name(const sdw_weights *w);

/* The mapped files (shards in the order the index first names them). */
int sdw_weights_file_count(const sdw_weights *w);
const sdw_safetensors *sdw_weights_file(const sdw_weights *w, int index);

/* Finds key in any of the files; NULL when absent. *file (may be NULL)
 * receives the file holding it. */
const sdw_safetensors_entry *sdw_weights_find(const sdw_weights *w, const char *key,
                                              const sdw_safetensors **file);

/* One substring rewrite: the first occurrence of native in the name becomes
 * file ("encoder.layers." -> "transformer.resblocks."). */
typedef struct sdw_weights_rewrite {
  const char *native;
  const char *file;
} sdw_weights_rewrite;

/* How native parameter names become file keys: key = prefix + map(native).
 * All fields are optional (a zeroed map looks every name up unchanged). */
typedef struct sdw_weights_map {
  /* Prefixes to try, in order; the one under which the most parameters are
   * found wins for all parameters (ties: the earlier one). None: "". */
  const char *const *prefixes;
  int prefix_count;
  /* Applied in order to the native name when there is no callback. */
  const sdw_weights_rewrite *rewrites;
  int rewrite_count;
  /* Writes the file key (before the prefix) for native into key[cap] and
   * returns true, or returns false when the parameter has no counterpart in
   * this layout (then it must be optional). */
  bool (*map)(void *user, const char *native, char *key, size_t cap);
  /* True for parameters that may be absent (they keep their values). */
  bool (*optional)(void *user, const char *native);
  void *user;
  /* Accept a file shape that equals the parameter's once dims of size 1
   * are dropped (a 1x1 conv weight [C,C,1,1] for a linear [C,C]). */
  bool squeeze_ones;
} sdw_weights_map;

/* What a load did (for logs and tests). */
typedef struct sdw_weights_stats {
  char prefix[128]; /* the prefix that was chosen */
  int loaded;       /* parameters filled */
  int converted;    /* of which came from F16 / BF16 / F64 tensors */
  size_t bytes_read;
} sdw_weights_stats;

/* Fills every parameter of params (which must be allocated: binding pass
 * done) from w through map, marking each filled parameter loaded. Nothing is
 * written unless every required parameter is present with the right shape
 * and a float dtype. stats may be NULL. */
sdw_status sdw_weights_load(const sdw_weights *w, const sdw_weights_map *map, sdw_params *params,
                            sdw_weights_stats *stats);

/* The file key for one native name under map and prefix (what the loader
 * looks up), into key[cap]; false when the map has no counterpart or the key
 * does not fit. */
bool sdw_weights_key(const sdw_weights_map *map, const char *prefix, const char *native, char *key,
                     size_t cap);

#ifdef __cplusplus
}
#endif
#endif
