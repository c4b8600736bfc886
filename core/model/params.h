/* Parameter sets: every trainable or frozen tensor of a model, by its native
 * name, stored back to back in ONE flat f32 buffer so the optimizer, EMA,
 * gradient clipping and all-reduce work on a single contiguous range.
 *
 * A model declares its parameters with a build function that is called
 * twice: first to count (sdw_params_take returns tensors with data == NULL),
 * then, after sdw_params_allocate, to bind (the same calls in the same order
 * now return views into the flat buffer). Model code therefore has one place
 * that lists its weights. The set owns the flat buffer (backend memory) and
 * the names; views stay valid until sdw_params_free.
 */
#ifndef SDW_MODEL_PARAMS_H
#define SDW_MODEL_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/status.h"
#include "core/base/tensor.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SDW_PARAM_NAME_MAX = 160 };

typedef struct sdw_param {
  char name[SDW_PARAM_NAME_MAX]; /* native name, e.g. "downs.3.tfm.proj_in.weight" */
  sdw_tensor value;              /* view into params->flat */
  size_t offset;                 /* in elements from the start of flat */
  bool loaded;                   /* set by loaders */
} sdw_param;

typedef struct sdw_params {
  sdw_ctx *ctx;     /* the backend that owns flat (not owned) */
  sdw_param *items; /* owned */
  int count;
  int capacity;
  size_t total;  /* elements over all parameters */
  float *flat;   /* owned backend memory; NULL while counting */
  int bind_next; /* index of the next take in the binding pass */
  bool binding;
} sdw_params;

/* Starts an empty set on ctx's backend. */
void sdw_params_init(sdw_params *p, sdw_ctx *ctx);
/* Releases the flat buffer and the table. */
void sdw_params_free(sdw_params *p);

/* Declares (counting pass) or binds (binding pass) the next parameter; name
 * is printf-style. Returns the tensor view (data NULL while counting). A
 * binding pass that does not repeat the counting pass exactly is a bug. */
sdw_tensor sdw_params_take(sdw_params *p, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Allocates the flat buffer (zeroed) after the counting pass and switches to
 * binding. */
sdw_status sdw_params_allocate(sdw_params *p);
/* Checks that the binding pass took every declared parameter. */
sdw_status sdw_params_finish(sdw_params *p);

/* Finds a parameter by exact name; NULL when absent. */
sdw_param *sdw_params_find(sdw_params *p, const char *name);

#ifdef __cplusplus
}
#endif
#endif
