/* Weak placeholders for stages being written in parallel: each is replaced
 * by the strong definition in its own stage file (see stages.h). This file
 * is deleted once every stage exists. */
#include <stdio.h>

#include "pipeline/stages.h"

static int pending(const char *name) {
  fprintf(stderr, "sdw: pipeline stage '%s' is not available in this build yet\n", name);
  return 1;
}

__attribute__((weak)) int sdw_pipeline_encode_main(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("encode");
}
__attribute__((weak)) int sdw_pipeline_filter_captions_main(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("filter-captions");
}
__attribute__((weak)) int sdw_pipeline_diffusiondb_main(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("diffusiondb");
}
__attribute__((weak)) int sdw_pipeline_emoji_main(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("emoji");
}
