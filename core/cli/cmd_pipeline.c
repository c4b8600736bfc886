/* `sdw pipeline STAGE [options]`: dispatches to the data-pipeline stages. */
#include <stdio.h>
#include <string.h>

#include "core/cli/cli.h"
#include "pipeline/stages.h"

static void pipeline_usage(FILE *out) {
  fprintf(out, "usage: sdw pipeline <stage> [options]\n\nstages:\n");
  for (const sdw_pipeline_stage *s = sdw_pipeline_stages; s->name; s++)
    fprintf(out, "  %-16s %s\n", s->name, s->summary);
  fprintf(out, "\n'sdw pipeline <stage> --help' describes a stage; man sdw-pipeline has the "
               "details.\n");
}

int sdw_cmd_pipeline(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    pipeline_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const sdw_pipeline_stage *s = sdw_pipeline_stages; s->name; s++)
    if (strcmp(argv[1], s->name) == 0) return s->main(argc - 1, argv + 1);
  fprintf(stderr, "sdw: unknown pipeline stage '%s'; 'sdw pipeline --help' lists them\n", argv[1]);
  return 2;
}
