/* sdw: Stable Diffusion from scratch. Dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/base/status.h"
#include "core/cli/cli.h"

static const sdw_command commands[] = {
    {"info", "print the version, compiled-in backends, library versions and devices", sdw_cmd_info},
    {"run", "run one model component on tensors from a safetensors file", sdw_cmd_run},
    {"tokenize", "turn prompts into the 77 CLIP token ids of SD 1.x", sdw_cmd_tokenize},
    {"convert", "seed .pt checkpoints and UNet weights to other layouts", sdw_cmd_convert},
    {"pipeline", "prepare data: LAION metadata to latents, stage by stage", sdw_cmd_pipeline},
    {"sample", "make images from prompts: PNGs with AUTOMATIC1111 infotext", sdw_cmd_sample},
    {"train", "train a UNet on a latent store, in a run directory you can attach to",
     sdw_cmd_train},
    {"ctl", "talk to a running job: status, pause, resume, checkpoint, sample, stop", sdw_cmd_ctl},
    {"ls", "list run directories and their state", sdw_cmd_ls},
    {"attach", "open the workbench on a run (the job goes on when you detach)", sdw_cmd_attach},
    {"demo", "the whole product on the CPU: emoji data, pipeline, live training", sdw_cmd_demo},
    {"eval", "prompt-to-image retrieval accuracy of a model on its training set", sdw_cmd_eval},
};
enum { COMMAND_COUNT = sizeof commands / sizeof commands[0] };

static void print_usage(FILE *out) {
  fprintf(out, "usage: sdw [--help] [--version] <command> [<args>]\n"
               "       sdw [--model PATH]   (at a terminal: the workbench, with a prompt\n"
               "                             sampler for PATH when given)\n"
               "\n"
               "Stable Diffusion from scratch in C: data pipeline, training, sampling\n"
               "and a terminal workbench, in one binary.\n"
               "\n"
               "commands:\n");
  for (int i = 0; i < COMMAND_COUNT; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n'sdw <command> --help' describes a command; man sdw has the details.\n");
}

void sdw_cli_report_error(const char *context) {
  if (context && *context)
    fprintf(stderr, "sdw: %s: %s\n", context, sdw_last_error());
  else
    fprintf(stderr, "sdw: %s\n", sdw_last_error());
}

int main(int argc, char **argv) {
  /* Plain `sdw` at a terminal opens the workbench on the current directory
   * (runs and pipeline data found there); in a pipe or a script it prints
   * the usage as before. */
  if (argc < 2 && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
    char *attach_argv[] = {"attach", NULL};
    return sdw_cmd_attach(1, attach_argv);
  }
  /* `sdw --model M [attach options]`: the same with the prompt sampler (see
   * sdw attach --help); attach says so when there is no terminal. */
  if (argc >= 2 && strcmp(argv[1], "--model") == 0) {
    argv[0] = "attach";
    return sdw_cmd_attach(argc, argv);
  }
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    print_usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("sdw %s\n", SDW_VERSION);
    return 0;
  }
  for (int i = 0; i < COMMAND_COUNT; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "sdw: unknown command '%s'; 'sdw --help' lists the commands\n", argv[1]);
  return 2;
}
