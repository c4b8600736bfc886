/* `sdw run COMPONENT ...`: runs one model component on tensors read from a
 * safetensors file and writes its outputs to another. A user tool for
 * debugging and interop, and the way tests drive the models end to end. */
#include <stdio.h>
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
