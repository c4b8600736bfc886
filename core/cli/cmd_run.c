/* `sdw run COMPONENT ...`: runs one model component on tensors read from a
 * safetensors file and writes its outputs to another. A user tool for
 * debugging and interop, and the way tests drive the models end to end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli/cli.h"
#include "core/cli/run.h"

static const sdw_run_component components[] = {
    {"clip-text", "CLIP text encoder: input_ids -> last_hidden_state, pooler_output",
     sdw_run_clip_text_usage, sdw_run_clip_text},
    {"vae-encode", "VAE encoder: image -> posterior mean, logvar", sdw_run_vae_encode_usage,
     sdw_run_vae_encode},
    {"vae-decode", "VAE decoder: latents -> image", sdw_run_vae_decode_usage, sdw_run_vae_decode},
    {"unet", "UNet forward: sample, timestep, [context] -> out", sdw_run_unet_usage, sdw_run_unet},
    {"unet-grad", "UNet forward + backward, MSE to target -> loss, grad.<parameter>",
     sdw_run_unet_grad_usage, sdw_run_unet_grad},
    {"allreduce-check", "data-parallel collectives on every rank, checked",
     sdw_run_allreduce_check_usage, sdw_run_allreduce_check},
    {"cuda-parity", "every op on the CPU and CUDA backends, compared", sdw_run_cuda_parity_usage,
     sdw_run_cuda_parity},
};
enum { COMPONENT_COUNT = sizeof components / sizeof components[0] };

static void run_usage(FILE *out) {
  fprintf(out, "usage: sdw run <component> [options]\n"
               "\n"
               "Runs one model component on tensors from a safetensors file and writes its\n"
               "outputs to another safetensors file (float32). For debugging, interop with\n"
               "Python tools and tests.\n"
               "\n"
               "components:\n");
  for (int i = 0; i < COMPONENT_COUNT; i++)
    fprintf(out, "  %-11s %s\n", components[i].name, components[i].summary);
  for (int i = 0; i < COMPONENT_COUNT; i++) {
    fprintf(out, "\n");
    components[i].usage(out);
  }
}

int sdw_run_option(int argc, char **argv, int *i, const char *name, const char **value) {
  const char *arg = argv[*i];
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0) return 0;
  if (arg[n] == '=') {
    *value = arg + n + 1;
    return 1;
  }
  if (arg[n] != '\0') return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "sdw: run: option %s needs a value\n", name);
    return -1;
  }
  *value = argv[++*i];
  return 1;
}

int sdw_cmd_run(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "sdw: run: name a component; 'sdw run --help' lists them\n");
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    run_usage(stdout);
    return 0;
  }
  for (int i = 0; i < COMPONENT_COUNT; i++)
    if (strcmp(argv[1], components[i].name) == 0) return components[i].run(argc - 1, argv + 1);
  fprintf(stderr, "sdw: run: unknown component '%s'; 'sdw run --help' lists the components\n",
          argv[1]);
  return 2;
}

const sdw_safetensors_entry *sdw_run_find_any(const sdw_safetensors *st, const char *const *names,
                                              int count) {
  for (int i = 0; i < count; i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_find(st, names[i]);
    if (e) return e;
  }
  return NULL;
}

sdw_status sdw_run_read_f32(const sdw_safetensors *st, const sdw_safetensors_entry *e, bool ints_ok,
                            float **buf) {
  const char *file = sdw_safetensors_name(st);
  const sdw_dtype d = e->dtype;
  const bool floats = d == SDW_F32 || d == SDW_F16 || d == SDW_BF16 || d == SDW_F64;
  const bool ints = d == SDW_I64 || d == SDW_I32 || d == SDW_I16 || d == SDW_I8 || d == SDW_U8;
  *buf = NULL;
  if (!floats && !(ints_ok && ints))
    return sdw_fail(SDW_ERR_FORMAT, "%s: '%s' has dtype %s; a %s dtype is needed", file, e->name,
                    sdw_dtype_name(d), ints_ok ? "float or integer" : "float");
  /* the mapping may be unaligned: copy the bytes, then read them as a flat
   * run (any rank: the caller checks the shape) */
  void *raw = malloc(e->nbytes ? e->nbytes : 1);
  *buf = malloc((size_t)(e->numel ? e->numel : 1) * sizeof(float));
  if (!raw || !*buf) {
    free(raw);
    free(*buf);
    *buf = NULL;
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of host memory", file);
  }
  memcpy(raw, e->data, e->nbytes);
  sdw_tensor src = sdw_tensor_1d(raw, d, e->numel);
  for (int64_t i = 0; i < e->numel; i++)
    (*buf)[i] = (float)sdw_tensor_get(&src, i);
  free(raw);
  return SDW_OK;
}

sdw_status sdw_run_upload_f32(sdw_ctx *ctx, const float *host, size_t n, float **dev) {
  SDW_TRY(ctx->ops->alloc(ctx, n * sizeof(float), (void **)dev));
  return ctx->ops->upload(ctx, *dev, host, n * sizeof(float));
}
