/* AUTOMATIC1111 "infotext": the sampler settings stored in a PNG's
 * "parameters" text chunk, which A1111, ComfyUI, civitai and image viewers
 * read back ("PNG Info", "send to txt2img"). Format:
 *
 *   <prompt>
 *   Negative prompt: <negative>              (line omitted when empty)
 *   Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x512, ...
 *
 * A value containing ',', ':' or a newline is written JSON-quoted, as A1111's
 * infotext quote() does, so its parser (parse_generation_parameters) reads
 * every field back. */
#ifndef SDW_DIFFUSION_INFOTEXT_H
#define SDW_DIFFUSION_INFOTEXT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_infotext {
  const char *prompt;
  const char *negative; /* NULL or "" for none */
  int steps;
  const char *sampler;       /* A1111 names: "DDIM", "Euler", "DPM++ 2M" */
  const char *schedule_type; /* "Karras" or NULL */
  double cfg_scale;
  uint64_t seed;
  int width, height;
  const char *model_hash; /* first 10 hex digits of the weights' SHA-256, or NULL */
  const char *model;      /* model name (file stem), or NULL */
  double eta;             /* written when sampler is DDIM and eta != 0 */
  const char *rng;        /* "philox" or "torch-cpu"; NULL to omit */
  const char *version;    /* e.g. "sdw 0.1.0" */
} sdw_infotext;

/* Formats into buf (NUL-terminated, truncated to size); returns the length
 * the full text needs (like snprintf). */
size_t sdw_infotext_format(const sdw_infotext *info, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
