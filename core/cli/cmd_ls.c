/* `sdw ls`: the run directories under some directories and their state.
 *
 *   sdw ls [--json] [DIR...]     (default: ./runs and .)
 *
 * A run directory is one holding job.json (written by sdw train). A job whose
 * job.json says it is active (starting, running, paused, ...) but whose
 * process is gone (same host, kill(pid, 0) fails) is shown as "dead". */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/cli/cli.h"

enum { MAX_DEPTH = 3 }; /* DIR/a/b/c: runs grouped two levels deep are found */

static void print_help(FILE *out) {
  fprintf(out, "usage: sdw ls [--json] [DIR...]\n"
               "\n"
               "Lists the run directories (directories holding job.json, made by sdw train)\n"
               "found in each DIR and up to three levels below it (default: ./runs and .),\n"
               "one line each: the run, its state, step / total steps, the last loss,\n"
               "images per second, and how long ago job.json was updated.\n"
               "\n"
               "The state is job.json's (starting, running, paused, sampling, checkpointing,\n"
               "stopping, finished, failed, stopped), except that an active job whose\n"
               "process no longer exists on this host is shown as dead.\n"
               "\n"
               "options:\n"
               "  --json   one JSON array of objects {run, state, pid, host, step,\n"
               "           total_steps, epoch, loss, img_per_s, updated} instead of the table\n"
               "  --help   this text\n"
               "\n"
               "Exit status: 0 (also when there are no runs), 1 when a DIR is not a directory,\n"
               "2 for a usage error.\n");
}

typedef struct run_info {
  char *path; /* as found (DIR/...) */
  char *real; /* realpath, to drop duplicates */
  cJSON *job; /* parsed job.json, NULL when unreadable */
  char state[32];
} run_info;

typedef struct run_list {
  run_info *v;
  size_t n, cap;
} run_list;

static const char *str_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool active_state(const char *s) {
  static const char *const active[] = {"starting", "running",       "paused",
                                       "sampling", "checkpointing", "stopping"};
  for (size_t i = 0; i < sizeof active / sizeof active[0]; i++)
    if (strcmp(s, active[i]) == 0) return true;
  return false;
}

/* The state to show: job.json's, or "dead" when an active job's process is
 * gone (only decidable on the host that wrote it). */
static void decide_state(run_info *r) {
  const char *s = str_of(r->job, "state");
  snprintf(r->state, sizeof r->state, "%s", s ? s : "unknown");
  if (!s || !active_state(s)) return;
  const cJSON *pid = cJSON_GetObjectItemCaseSensitive(r->job, "pid");
  const char *host = str_of(r->job, "host");
  char me[256] = "";
  gethostname(me, sizeof me - 1);
  if (host && strcmp(host, me) != 0) return; /* another machine's job */
  if (!cJSON_IsNumber(pid) || pid->valuedouble < 1 || pid->valuedouble > INT_MAX) return;
  if (kill((pid_t)pid->valuedouble, 0) != 0 && errno == ESRCH)
    snprintf(r->state, sizeof r->state, "dead");
}

static void add_run(run_list *l, const char *path) {
  char *real = realpath(path, NULL);
  if (!real) return;
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i].real, real) == 0) {
      free(real);
      return;
    }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    run_info *v = realloc(l->v, cap * sizeof *v);
    if (!v) {
      free(real);
      return;
    }
    l->v = v, l->cap = cap;
  }
  run_info *r = &l->v[l->n++];
  memset(r, 0, sizeof *r);
  r->path = strdup(path);
  r->real = real;
  size_t plen = strlen(path) + 16;
  char *jp = malloc(plen);
  snprintf(jp, plen, "%s/job.json", path);
  void *data = NULL;
  size_t size = 0;
  if (sdw_read_file(jp, &data, &size) == SDW_OK) r->job = cJSON_ParseWithLength(data, size);
  free(data);
  free(jp);
  if (!cJSON_IsObject(r->job)) {
    cJSON_Delete(r->job);
    r->job = NULL;
  }
  decide_state(r);
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void scan(run_list *l, const char *dir, int depth) {
  size_t n = strlen(dir);
  char *jp = malloc(n + 16);
  snprintf(jp, n + 16, "%s/job.json", dir);
  bool run = access(jp, F_OK) == 0;
  free(jp);
  if (run) {
    add_run(l, dir);
    return; /* a run's own subdirectories (checkpoints, samples) hold no runs */
  }
  if (depth >= MAX_DEPTH) return;
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue; /* ., .., hidden (.git, .venv) */
    size_t m = n + strlen(e->d_name) + 2;
    char *sub = malloc(m);
    if (strcmp(dir, ".") == 0)
      snprintf(sub, m, "%s", e->d_name);
    else
      snprintf(sub, m, "%s/%s", dir, e->d_name);
    if ((e->d_type == DT_DIR || e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) && is_dir(sub))
      scan(l, sub, depth + 1);
    free(sub);
  }
  closedir(d);
}

static int by_path(const void *a, const void *b) {
  return strcmp(((const run_info *)a)->path, ((const run_info *)b)->path);
}

static double num_or(const cJSON *o, const char *k, double def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static void ago(double updated, char *out, size_t cap) {
  if (!(updated > 0)) {
    snprintf(out, cap, "-");
    return;
  }
  double s = difftime(time(NULL), (time_t)updated);
  if (s < 0) s = 0;
  long t = (long)s;
  if (t < 60)
    snprintf(out, cap, "%lds ago", t);
  else if (t < 3600)
    snprintf(out, cap, "%ldm ago", t / 60);
  else if (t < 86400)
    snprintf(out, cap, "%ldh ago", t / 3600);
  else
    snprintf(out, cap, "%ldd ago", t / 86400);
}

static void print_table(const run_list *l) {
  int w = 3;
  for (size_t i = 0; i < l->n; i++) {
    int len = (int)strlen(l->v[i].path);
    if (len > w) w = len;
  }
  printf("%-*s  %-13s  %15s  %10s  %8s  %s\n", w, "RUN", "STATE", "STEP", "LOSS", "IMG/S",
         "UPDATED");
  for (size_t i = 0; i < l->n; i++) {
    const run_info *r = &l->v[i];
    char step[48] = "-", loss[24] = "-", ips[24] = "-", upd[32];
    double s = num_or(r->job, "step", -1), tot = num_or(r->job, "total_steps", -1);
    if (s >= 0 && tot > 0)
      snprintf(step, sizeof step, "%.0f/%.0f", s, tot);
    else if (s >= 0)
      snprintf(step, sizeof step, "%.0f", s);
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(r->job, "loss");
    if (cJSON_IsNumber(lv)) snprintf(loss, sizeof loss, "%.4g", lv->valuedouble);
    const cJSON *iv = cJSON_GetObjectItemCaseSensitive(r->job, "img_per_s");
    if (cJSON_IsNumber(iv)) snprintf(ips, sizeof ips, "%.3g", iv->valuedouble);
    ago(num_or(r->job, "updated", 0), upd, sizeof upd);
    printf("%-*s  %-13s  %15s  %10s  %8s  %s\n", w, r->path, r->state, step, loss, ips, upd);
  }
}

static void print_json_list(const run_list *l) {
  cJSON *arr = cJSON_CreateArray();
  static const char *const keys[] = {"pid",   "host", "step",      "total_steps",
                                     "epoch", "loss", "img_per_s", "updated"};
  for (size_t i = 0; i < l->n; i++) {
    const run_info *r = &l->v[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "run", r->path);
    cJSON_AddStringToObject(o, "state", r->state);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->job, keys[k]);
      cJSON_AddItemToObject(o, keys[k], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    cJSON_AddItemToArray(arr, o);
  }
  char *s = cJSON_PrintUnformatted(arr);
  if (s) printf("%s\n", s);
  free(s);
  cJSON_Delete(arr);
}

int sdw_cmd_ls(int argc, char **argv) {
  bool json = false;
  const char **dirs = calloc((size_t)argc + 2, sizeof *dirs);
  int ndirs = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_help(stdout);
      free(dirs);
      return 0;
    }
    if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      fprintf(stderr, "sdw: ls: unknown option '%s'; 'sdw ls --help' shows the usage\n", argv[i]);
      free(dirs);
      return 2;
    } else {
      dirs[ndirs++] = argv[i];
    }
  }
  bool defaults = ndirs == 0;
  if (defaults) {
    dirs[ndirs++] = "runs";
    dirs[ndirs++] = ".";
  }
  run_list l = {0};
  int rc = 0;
  for (int i = 0; i < ndirs; i++) {
    if (!is_dir(dirs[i])) {
      if (!defaults) {
        fprintf(stderr, "sdw: ls: %s is not a directory\n", dirs[i]);
        rc = 1;
      }
      continue;
    }
    scan(&l, dirs[i], 0);
  }
  if (l.n > 1) qsort(l.v, l.n, sizeof *l.v, by_path);
  if (json)
    print_json_list(&l);
  else if (l.n == 0)
    fprintf(stderr, "sdw: ls: no run directories (with job.json) found\n");
  else
    print_table(&l);
  for (size_t i = 0; i < l.n; i++) {
    free(l.v[i].path);
    free(l.v[i].real);
    cJSON_Delete(l.v[i].job);
  }
  free(l.v);
  free(dirs);
  return rc;
}
