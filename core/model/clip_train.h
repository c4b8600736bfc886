/* Training the CLIP text encoder: a forward that keeps what the backward
 * needs (a tape in an arena) and the backward into gradients of every
 * parameter, for a text encoder trained jointly with the UNet instead of
 * frozen (issue 9's comparison; the seed and SD keep it frozen, and
 * core/model/clip.h's forward is the inference one).
 *
 * The computation is sdw_clip_text_forward's last_hidden_state (clip.h):
 * token + position embedding, L pre-LN layers (causal self-attention with
 * the optional key padding mask, MLP), final layer norm. The backward
 * follows the ops' convention (kernels/ops.h): parameter gradients are
 * ACCUMULATED into `grads`, a second sdw_clip_text of the same config
 * (sdw_clip_text_init zeroes it), so micro-batches sum without copies.
 *
 * The tape and every temporary live in the caller's arena: the tape is valid
 * until the arena is reset below the mark it was taken at; the backward
 * releases its own temporaries before returning and may be repeated. */
#ifndef SDW_MODEL_CLIP_TRAIN_H
#define SDW_MODEL_CLIP_TRAIN_H

#include "core/base/arena.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/model/clip.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_clip_text_tape sdw_clip_text_tape;

/* input_ids: host I32 or I64 [B,T] (1 <= T <= max_positions, ids in the
 * vocabulary); attention_mask: host integer [B,T] (non-zero keeps the key)
 * or NULL; last_hidden: backend F32 [B,T,D], written. *tape is allocated
 * from arena. Bad ids or masks are SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_clip_text_forward_train(sdw_clip_text *m, sdw_arena *arena,
                                       const sdw_tensor *input_ids,
                                       const sdw_tensor *attention_mask, sdw_tensor *last_hidden,
                                       sdw_clip_text_tape **tape);

/* d_last_hidden: backend F32 [B,T,D], dLoss/dlast_hidden_state. Adds
 * dLoss/dparameter to grads (same config as m). */
sdw_status sdw_clip_text_backward(sdw_clip_text *m, sdw_clip_text *grads, sdw_arena *arena,
                                  const sdw_clip_text_tape *tape, const sdw_tensor *d_last_hidden);

#ifdef __cplusplus
}
#endif
#endif
