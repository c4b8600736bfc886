/* A CLIP text encoder made from nothing: random initialisation as
 * transformers' CLIPPreTrainedModel._init_weights does it (factor 1), and
 * a writer of the result as a transformers-style folder, so that a model
 * with no downloadable weights (the demo's frozen text encoder) is made
 * deterministically in C and then opened like any other:
 *
 *   token and position embeddings  N(0, 0.02)
 *   q/k/v_proj.weight              N(0, D^-0.5 (2L)^-0.5)
 *   out_proj.weight                N(0, D^-0.5)
 *   mlp.fc1.weight                 N(0, (2D)^-0.5)
 *   mlp.fc2.weight                 N(0, D^-0.5 (2L)^-0.5)
 *   every Linear bias 0, LayerNorm weight 1 and bias 0.
 * Normal values come from the Philox stream (seed, subsequence 0x636c6970
 * + parameter index), so the weights depend on the seed alone. */
#ifndef SDW_MODEL_CLIP_INIT_H
#define SDW_MODEL_CLIP_INIT_H

#include <stdint.h>

#include "core/base/status.h"
#include "core/model/clip.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Overwrites every parameter of m (initialised with sdw_clip_text_init on
 * the CPU backend). */
sdw_status sdw_clip_text_init_random(sdw_clip_text *m, uint64_t seed);

/* Writes dir/config.json (a CLIPTextConfig: model_type clip_text_model,
 * CLIPTextModel) and dir/model.safetensors (F32, transformers' names
 * "text_model.<native name>"), each atomically; creates dir. The folder is
 * what sdw_clip_text_open and transformers' CLIPTextModel.from_pretrained
 * read. note: free text stored as the file's "sdw.note" metadata. */
sdw_status sdw_clip_text_save(const sdw_clip_text *m, const char *dir, const char *note);

#ifdef __cplusplus
}
#endif
#endif
