/* `sdw run COMPONENT`: the component runners (core/cli/run_*.c), each a
 * model part driven from safetensors files. cmd_run.c holds the table that
 * dispatches to them. */
#ifndef SDW_CLI_RUN_H
#define SDW_CLI_RUN_H

#include <stdbool.h>
#include <stdio.h>

#include "core/base/safetensors.h"
#include "kernels/ops.h"

typedef struct sdw_run_component {
  const char *name;
  const char *summary;               /* one line for `sdw run --help` */
  void (*usage)(FILE *out);          /* the component's --help text */
  int (*run)(int argc, char **argv); /* argv[0] is the component name */
} sdw_run_component;

/* clip-text (core/cli/run_clip_text.c). */
void sdw_run_clip_text_usage(FILE *out);
int sdw_run_clip_text(int argc, char **argv);

/* unet (core/cli/run_unet.c). */
void sdw_run_unet_usage(FILE *out);
int sdw_run_unet(int argc, char **argv);

/* unet-grad (core/cli/run_unet_grad.c). */
void sdw_run_unet_grad_usage(FILE *out);
int sdw_run_unet_grad(int argc, char **argv);

/* vae-encode, vae-decode (core/cli/run_vae.c). */
void sdw_run_vae_encode_usage(FILE *out);
int sdw_run_vae_encode(int argc, char **argv);
void sdw_run_vae_decode_usage(FILE *out);
int sdw_run_vae_decode(int argc, char **argv);

/* allreduce-check (core/cli/run_allreduce.c). */
void sdw_run_allreduce_check_usage(FILE *out);
int sdw_run_allreduce_check(int argc, char **argv);

/* cuda-parity (core/cli/run_cuda_parity.c): CPU vs CUDA for every op. */
void sdw_run_cuda_parity_usage(FILE *out);
int sdw_run_cuda_parity(int argc, char **argv);

/* Shared option helpers: argv[*i] is "--name VALUE" or "--name=VALUE";
 * on a match *value receives the value (advancing *i past it) and the
 * function returns 1; 0 when argv[*i] is another option; -1 (message
 * printed) when the value is missing. */
int sdw_run_option(int argc, char **argv, int *i, const char *name, const char **value);

/* The first of names present in st, or NULL (inputs with alternative names). */
const sdw_safetensors_entry *sdw_run_find_any(const sdw_safetensors *st, const char *const *names,
                                              int count);
/* An f32 copy of e (a float dtype, or an integer one when ints_ok) in *buf,
 * malloc'd, owned by the caller. SDW_ERR_FORMAT names the tensor and the
 * dtype when it is not convertible. */
sdw_status sdw_run_read_f32(const sdw_safetensors *st, const sdw_safetensors_entry *e, bool ints_ok,
                            float **buf);
/* Copies n floats into backend memory allocated here (*dev owned by the
 * caller: ctx->ops->free). */
sdw_status sdw_run_upload_f32(sdw_ctx *ctx, const float *host, size_t n, float **dev);

#endif
