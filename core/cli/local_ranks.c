/* Ranks of one machine started by sdw train itself (see local_ranks.h). */
#include "core/cli/local_ranks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

bool sdw_local_ranks_is_child(void) {
  const char *r = getenv("SDW_RANK");
  return r && *r && strcmp(r, "0") != 0;
}

/* A loopback port free right now (rank 0 listens on it a moment later). */
static sdw_status free_port(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sdw_fail(SDW_ERR_IO, "local ranks: socket: %s", strerror(errno));
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    const int e = errno;
    close(fd);
    return sdw_fail(SDW_ERR_IO, "local ranks: no free loopback port: %s", strerror(e));
  }
  *port = ntohs(a.sin_port);
  close(fd);
  return SDW_OK;
}

/* environ with the given NAME=value entries put first (replacing any of the
 * same names); a malloc'ed array of borrowed strings, NULL-terminated. */
static char **env_with(char *const *extra, int nextra) {
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = malloc((n + (size_t)nextra + 1) * sizeof *env);
  if (!env) return NULL;
  size_t k = 0;
  for (int i = 0; i < nextra; i++)
    env[k++] = extra[i];
  for (size_t i = 0; i < n; i++) {
    bool replaced = false;
    for (int j = 0; j < nextra && !replaced; j++) {
      const size_t name = (size_t)(strchr(extra[j], '=') - extra[j]);
      replaced = strncmp(environ[i], extra[j], name + 1) == 0;
    }
    if (!replaced) env[k++] = environ[i];
  }
  env[k] = NULL;
  return env;
}

sdw_status sdw_local_ranks_start(int count, int threads, char *const *child_argv,
                                 sdw_local_ranks *out) {
  memset(out, 0, sizeof *out);
  out->count = 1;
  if (count <= 1 || sdw_local_ranks_is_child()) return SDW_OK;
  if (count > SDW_LOCAL_RANKS_MAX)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "local_ranks must be at most %d",
                    SDW_LOCAL_RANKS_MAX);
  if (threads <= 0) {
    threads = omp_get_max_threads() / count;
    if (threads < 1) threads = 1;
  }
  out->threads = threads;
  int port = 0;
  SDW_TRY(free_port(&port));
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return sdw_fail(SDW_ERR_IO, "local ranks: cannot find this binary (/proc/self/exe)");
  exe[n] = '\0';
  int argc = 0;
  while (child_argv[argc])
    argc++;
  char **argv = malloc(((size_t)argc + 1) * sizeof *argv);
  if (!argv) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  memcpy(argv, child_argv, ((size_t)argc + 1) * sizeof *argv);
  argv[0] = exe;

  static char dist[] = "SDW_DIST=tcp";
  char init[64], world[32], omp[32], blas[32], rank[32];
  snprintf(init, sizeof init, "SDW_DIST_INIT=tcp://127.0.0.1:%d", port);
  snprintf(world, sizeof world, "SDW_WORLD_SIZE=%d", count);
  snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d", threads);
  snprintf(blas, sizeof blas, "OPENBLAS_NUM_THREADS=%d", threads);
  char *extra[] = {dist, init, world, omp, blas, rank};
  sdw_status st = SDW_OK;
  const pid_t parent = getpid();
  fflush(NULL);
  for (int r = 1; r < count && st == SDW_OK; r++) {
    snprintf(rank, sizeof rank, "SDW_RANK=%d", r);
    char **env = env_with(extra, 6); /* built before fork: the child only execs */
    if (!env) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      break;
    }
    const pid_t pid = fork();
    if (pid == 0) {
      /* the child dies with rank 0 (a killed rank 0 leaves no orphan that
       * waits for it) */
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      execve(exe, argv, env);
      _exit(127);
    }
    free(env);
    if (pid < 0)
      st = sdw_fail(SDW_ERR_IO, "local ranks: cannot start rank %d: %s", r, strerror(errno));
    else
      out->pids[r] = pid;
    out->count = r + 1;
  }
  free(argv);
  if (st != SDW_OK) {
    sdw_local_ranks_finish(out, 0);
    return st;
  }
  /* this process: rank 0 */
  setenv("SDW_DIST", "tcp", 1);
  setenv("SDW_DIST_INIT", init + strlen("SDW_DIST_INIT="), 1);
  setenv("SDW_WORLD_SIZE", world + strlen("SDW_WORLD_SIZE="), 1);
  setenv("SDW_RANK", "0", 1);
  return SDW_OK;
}

void sdw_local_ranks_finish(sdw_local_ranks *lr, double grace_s) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int r = 1; r < lr->count; r++) {
    if (lr->pids[r] <= 0) continue;
    for (;;) {
      const pid_t w = waitpid(lr->pids[r], NULL, WNOHANG);
      if (w == lr->pids[r] || (w < 0 && errno != EINTR)) break;
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      if ((double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9 >= grace_s) {
        kill(lr->pids[r], SIGKILL);
        waitpid(lr->pids[r], NULL, 0);
        break;
      }
      usleep(20 * 1000);
    }
    lr->pids[r] = 0;
  }
}
