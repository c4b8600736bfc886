/* libFuzzer target for the safetensors reader (make fuzz): any bytes must be
 * either refused with SDW_ERR_FORMAT and a message, or accepted with every
 * entry inside the input and consistent with its dtype and shape. Built with
 * ASan + UBSan, so any read outside the input or undefined arithmetic stops
 * the run. Seeds: tests/fuzz/seeds/safetensors/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_safetensors *st = NULL;
  sdw_status s = sdw_safetensors_open_memory(data, size, "fuzz.safetensors", &st);
  if (s != SDW_OK) {
    if (s != SDW_ERR_FORMAT || st != NULL || sdw_last_error()[0] == '\0') abort();
    return 0;
  }
  const uint8_t *end = data + size;
  volatile unsigned sink = 0;
  for (size_t i = 0; i < sdw_safetensors_count(st); i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
    const uint8_t *p = e->data;
    /* inside the input, and nbytes = numel * element size */
    if (p < data || p > end || e->nbytes > (size_t)(end - p)) abort();
    if ((uint64_t)e->numel * sdw_dtype_size(e->dtype) != e->nbytes) abort();
    uint64_t numel = 1; /* unsigned: [2^62, 2, 0] is valid and wraps harmlessly */
    for (int d = 0; d < e->ndim; d++)
      numel *= (uint64_t)e->shape[d];
    if (numel != (uint64_t)e->numel) abort();
    for (size_t b = 0; b < e->nbytes; b++)
      sink += p[b];
    if (sdw_safetensors_find(st, e->name) != e) abort();
    sdw_tensor t;
    (void)sdw_safetensors_tensor(st, e, &t);
  }
  for (size_t i = 0; i < sdw_safetensors_metadata_count(st); i++) {
    const char *k, *v;
    sdw_safetensors_metadata_at(st, i, &k, &v);
    sink += (unsigned)strlen(k) + (unsigned)strlen(v);
    if (sdw_safetensors_metadata_get(st, k) == NULL) abort();
  }
  (void)sink;
  sdw_safetensors_close(st);
  return 0;
}
