/* The sdw command line: one entry per subcommand (core/cli/cmd_*.c). Each
 * returns the process exit status; errors are printed as one line
 * "sdw: <what went wrong and what to do>". */
#ifndef SDW_CLI_H
#define SDW_CLI_H

typedef struct sdw_command {
  const char *name;
  const char *summary;               /* one line for `sdw --help` */
  int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} sdw_command;

int sdw_cmd_info(int argc, char **argv);
int sdw_cmd_run(int argc, char **argv);
int sdw_cmd_tokenize(int argc, char **argv);
int sdw_cmd_convert(int argc, char **argv);
int sdw_cmd_pipeline(int argc, char **argv);
int sdw_cmd_sample(int argc, char **argv);
int sdw_cmd_train(int argc, char **argv);  /* core/cli/cmd_train.c */
int sdw_cmd_ctl(int argc, char **argv);    /* core/cli/cmd_ctl.c */
int sdw_cmd_ls(int argc, char **argv);     /* core/cli/cmd_ls.c */
int sdw_cmd_attach(int argc, char **argv); /* tui/ */
int sdw_cmd_demo(int argc, char **argv);   /* core/cli/cmd_demo.c */
int sdw_cmd_eval(int argc, char **argv);   /* core/cli/cmd_eval.c */

/* Prints "sdw: <message>" for the thread's last error, prefixed by context. */
void sdw_cli_report_error(const char *context);

#endif
