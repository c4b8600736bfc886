#include "core/base/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sdw_atomic_file {
  int fd;
  size_t written;
  sdw_status error; /* the first failed write, reported again by commit */
  char *path;       /* the target */
  char *tmp_path;   /* the temporary file in the same directory */
  char *dir;        /* the directory to fsync after the rename */
};

static void atomic_file_free(sdw_atomic_file *f) {
  free(f->path);
  free(f->tmp_path);
  free(f->dir);
  free(f);
}

/* Closes and removes the temporary file; errno is preserved for messages. */
static void atomic_file_discard(sdw_atomic_file *f) {
  int saved = errno;
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  unlink(f->tmp_path);
  errno = saved;
}

sdw_status sdw_atomic_file_open(const char *path, sdw_atomic_file **out) {
  *out = NULL;
  size_t len = strlen(path);
  if (len == 0 || path[len - 1] == '/')
    return sdw_fail(SDW_ERR_IO, "%s: cannot write: not a file name", len ? path : "\"\"");
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dir_len = slash ? (size_t)(slash - path) : 0;

  sdw_atomic_file *f = calloc(1, sizeof *f);
  if (!f) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  f->fd = -1;
  f->path = strdup(path);
  /* "<dir>/.<base>.tmp.<pid>"; dir "/" stays "/" and no dir means ".". */
  size_t tmp_size = len + 48;
  f->tmp_path = malloc(tmp_size);
  f->dir = malloc(dir_len + 2);
  if (!f->path || !f->tmp_path || !f->dir) {
    atomic_file_free(f);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  if (slash) {
    size_t keep = dir_len ? dir_len : 1; /* "/name" -> dir "/" */
    memcpy(f->dir, path, keep);
    f->dir[keep] = '\0';
  } else {
    strcpy(f->dir, ".");
  }
  snprintf(f->tmp_path, tmp_size, "%.*s.%s.tmp.%ld", (int)(base - path), path, base,
           (long)getpid());

  f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (f->fd < 0) {
    sdw_status st = sdw_fail(SDW_ERR_IO, "%s: cannot create the temporary file %s: %s", path,
                             f->tmp_path, strerror(errno));
    atomic_file_free(f);
    return st;
  }
  *out = f;
  return SDW_OK;
}

sdw_status sdw_atomic_file_write(sdw_atomic_file *f, const void *data, size_t size) {
  if (f->error != SDW_OK) return f->error;
  const unsigned char *p = data;
  while (size > 0) {
    /* Linux writes at most ~2 GiB per call; short writes are retried. */
    size_t chunk = size < ((size_t)1 << 30) ? size : ((size_t)1 << 30);
    ssize_t n = write(f->fd, p, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      f->error = sdw_fail(SDW_ERR_IO, "%s: write failed after %zu bytes: %s", f->path, f->written,
                          strerror(errno));
      return f->error;
    }
    p += n;
    size -= (size_t)n;
    f->written += (size_t)n;
  }
  return SDW_OK;
}

size_t sdw_atomic_file_size(const sdw_atomic_file *f) { return f->written; }

void sdw_atomic_file_abort(sdw_atomic_file *f) {
  if (!f) return;
  atomic_file_discard(f);
  atomic_file_free(f);
}

sdw_status sdw_atomic_file_commit(sdw_atomic_file *f) {
  sdw_status st = f->error;
  if (st != SDW_OK) {
    atomic_file_discard(f);
    atomic_file_free(f);
    return st;
  }
  const char *what = NULL;
  if (fsync(f->fd) != 0) {
    what = "fsync";
  } else {
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) what = "close";
  }
  if (!what && rename(f->tmp_path, f->path) != 0) what = "rename";
  if (what) {
    st = sdw_fail(SDW_ERR_IO, "%s: %s of the temporary file %s failed: %s", f->path, what,
                  f->tmp_path, strerror(errno));
    atomic_file_discard(f);
    atomic_file_free(f);
    return st;
  }
  /* The rename is durable only once the directory entry is on disk. Some file
   * systems cannot fsync a directory (EINVAL); that is not an error there. */
  int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    st = sdw_fail(SDW_ERR_IO, "%s: written, but its directory %s cannot be opened to sync: %s",
                  f->path, f->dir, strerror(errno));
  } else {
    if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP)
      st = sdw_fail(SDW_ERR_IO, "%s: written, but syncing its directory %s failed: %s", f->path,
                    f->dir, strerror(errno));
    close(dfd);
  }
  atomic_file_free(f);
  return st;
}

sdw_status sdw_atomic_write(const char *path, const void *data, size_t size) {
  sdw_atomic_file *f;
  SDW_TRY(sdw_atomic_file_open(path, &f));
  if (size > 0) {
    sdw_status st = sdw_atomic_file_write(f, data, size);
    if (st != SDW_OK) {
      sdw_atomic_file_abort(f);
      return st;
    }
  }
  return sdw_atomic_file_commit(f);
}

sdw_status sdw_read_file(const char *path, void **data, size_t *size) {
  *data = NULL;
  *size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: cannot open: %s", path,
                    strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return sdw_fail(SDW_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return sdw_fail(SDW_ERR_IO, "%s: %s", path,
                    S_ISDIR(st.st_mode) ? "is a directory, not a file" : "not a regular file");
  }
  /* The size is a hint only (the file may change while it is read). */
  size_t cap = (size_t)st.st_size + 1, used = 0;
  unsigned char *buf = malloc(cap + 1);
  if (!buf) {
    close(fd);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, cap);
  }
  for (;;) {
    if (used == cap) {
      size_t ncap = cap * 2;
      unsigned char *nbuf = realloc(buf, ncap + 1);
      if (!nbuf) {
        free(buf);
        close(fd);
        return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, ncap);
      }
      buf = nbuf;
      cap = ncap;
    }
    ssize_t n = read(fd, buf + used, cap - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      free(buf);
      close(fd);
      return sdw_fail(SDW_ERR_IO, "%s: read failed: %s", path, strerror(err));
    }
    if (n == 0) break;
    used += (size_t)n;
  }
  close(fd);
  buf[used] = '\0';
  *data = buf;
  *size = used;
  return SDW_OK;
}

sdw_status sdw_mkdir_p(const char *path) {
  size_t len = strlen(path);
  if (len == 0) return sdw_fail(SDW_ERR_IO, "mkdir: empty directory name");
  char *buf = strdup(path);
  if (!buf) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  /* Create every prefix ending before a '/', then the whole path. */
  for (size_t i = 1; i <= len; i++) {
    if (i < len && buf[i] != '/') continue;
    if (i < len && buf[i - 1] == '/') continue; /* "a//b" */
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
      sdw_status st =
          sdw_fail(SDW_ERR_IO, "%s: cannot create directory %s: %s", path, buf, strerror(errno));
      free(buf);
      return st;
    }
    struct stat st;
    const char *why = NULL;
    if (stat(buf, &st) != 0)
      why = strerror(errno);
    else if (!S_ISDIR(st.st_mode))
      why = "it exists and is not a directory";
    if (why) {
      sdw_status s = sdw_fail(SDW_ERR_IO, "%s: cannot create directory %s: %s", path, buf, why);
      free(buf);
      return s;
    }
    buf[i] = saved;
  }
  free(buf);
  return SDW_OK;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void sdw_list_files_free(char **names, int count) {
  for (int i = 0; i < count; i++)
    free(names[i]);
  free(names);
}

sdw_status sdw_list_files(const char *dir, const char *suffix, char ***names, int *count) {
  *names = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) return sdw_fail(SDW_ERR_NOT_FOUND, "%s: %s", dir, strerror(errno));
  const size_t suffix_len = strlen(suffix);
  char **v = NULL;
  int n = 0, cap = 0;
  sdw_status st = SDW_OK;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len <= suffix_len || e->d_name[0] == '.' ||
        strcmp(e->d_name + len - suffix_len, suffix) != 0)
      continue;
    struct stat sb;
    if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode)) continue;
    if (n == cap) {
      int grown_cap = cap ? cap * 2 : 64;
      char **grown = realloc(v, (size_t)grown_cap * sizeof *grown);
      if (!grown) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory listing files", dir);
        break;
      }
      v = grown;
      cap = grown_cap;
    }
    if (!(v[n] = strdup(e->d_name))) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory listing files", dir);
      break;
    }
    n++;
  }
  closedir(d);
  if (st != SDW_OK) {
    sdw_list_files_free(v, n);
    return st;
  }
  if (n) qsort(v, (size_t)n, sizeof *v, compare_names);
  *names = v;
  *count = n;
  return SDW_OK;
}
