/* Weak placeholders for commands being written in parallel: each is
 * replaced by the strong definition in its own file (see cli.h). This file
 * is deleted once every command exists. */
#include <stdio.h>

#include "core/cli/cli.h"

static int pending(const char *name) {
  fprintf(stderr, "sdw: '%s' is not available in this build yet\n", name);
  return 1;
}

__attribute__((weak)) int sdw_cmd_train(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("train");
}
__attribute__((weak)) int sdw_cmd_ctl(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("ctl");
}
__attribute__((weak)) int sdw_cmd_ls(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("ls");
}
__attribute__((weak)) int sdw_cmd_attach(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("attach");
}
__attribute__((weak)) int sdw_cmd_demo(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("demo");
}
__attribute__((weak)) int sdw_cmd_eval(int argc, char **argv) {
  (void)argc, (void)argv;
  return pending("eval");
}
