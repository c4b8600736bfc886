#include "core/model/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sdw_params_init(sdw_params *p, sdw_ctx *ctx) {
  memset(p, 0, sizeof *p);
  p->ctx = ctx;
}

void sdw_params_free(sdw_params *p) {
  if (p->flat) p->ctx->ops->free(p->ctx, p->flat);
  free(p->items);
  memset(p, 0, sizeof *p);
}

sdw_tensor sdw_params_take(sdw_params *p, int ndim, const int64_t *shape, const char *fmt, ...) {
  char name[SDW_PARAM_NAME_MAX];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  SDW_ASSERT_MSG(len > 0 && len < SDW_PARAM_NAME_MAX, "parameter name too long: %s", name);
  sdw_tensor view = sdw_tensor_make(NULL, SDW_F32, ndim, shape);
  view.device = (sdw_device){p->ctx->ops->device, 0};
  if (p->binding) {
    SDW_ASSERT_MSG(p->bind_next < p->count, "binding pass takes more parameters than declared");
    sdw_param *item = &p->items[p->bind_next++];
    SDW_ASSERT_MSG(strcmp(item->name, name) == 0 && sdw_tensor_same_shape(&item->value, &view),
                   "binding pass differs from the counting pass at %s", name);
    return item->value;
  }
  if (p->count == p->capacity) {
    int capacity = p->capacity ? 2 * p->capacity : 256;
    sdw_param *items = realloc(p->items, (size_t)capacity * sizeof *items);
    SDW_ASSERT_MSG(items != NULL, "out of memory declaring parameters");
    p->items = items;
    p->capacity = capacity;
  }
  sdw_param *item = &p->items[p->count++];
  memset(item, 0, sizeof *item);
  memcpy(item->name, name, (size_t)len + 1);
  item->value = view;
  item->offset = p->total;
  /* Keep every parameter 64-byte aligned inside the flat buffer. */
  p->total += ((size_t)sdw_tensor_numel(&view) + 15) / 16 * 16;
  return view;
}

sdw_status sdw_params_allocate(sdw_params *p) {
  SDW_ASSERT(!p->binding && !p->flat);
  size_t bytes = (p->total ? p->total : 1) * sizeof(float);
  void *flat = NULL;
  SDW_TRY(p->ctx->ops->alloc(p->ctx, bytes, &flat));
  p->flat = flat;
  sdw_tensor all = sdw_tensor_1d(p->flat, SDW_F32, (int64_t)p->total);
  all.device = (sdw_device){p->ctx->ops->device, 0};
  SDW_TRY(p->ctx->ops->fill(p->ctx, &all, 0.0f));
  for (int i = 0; i < p->count; i++)
    p->items[i].value.data = p->flat + p->items[i].offset;
  p->binding = true;
  p->bind_next = 0;
  return SDW_OK;
}

sdw_status sdw_params_finish(sdw_params *p) {
  SDW_ASSERT_MSG(p->binding && p->bind_next == p->count,
                 "binding pass took %d of %d declared parameters", p->bind_next, p->count);
  return SDW_OK;
}

sdw_param *sdw_params_find(sdw_params *p, const char *name) {
  for (int i = 0; i < p->count; i++)
    if (strcmp(p->items[i].name, name) == 0) return &p->items[i];
  return NULL;
}
