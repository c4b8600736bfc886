/* core/base/fsutil: atomic replacement (content, no temporary left behind,
 * the old file intact after a failure), whole-file reads, mkdir -p. The tests
 * run as root, where permissions stop nothing, so failures are forced with
 * paths the kernel refuses for everyone: a path below a regular file
 * (ENOTDIR) and a target that is a non-empty directory (rename: EISDIR). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "tests/test.h"

/* A fresh directory under the test's tmpdir. */
static void make_dir(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", sdw_test_tmpdir(), name);
  CHECK_OK(sdw_mkdir_p(buf));
}

/* Number of ".*.tmp.*" files in dir (leftover temporaries). */
static int count_temporaries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static bool file_is(const char *path, const char *want) {
  void *data = NULL;
  size_t size = 0;
  if (sdw_read_file(path, &data, &size) != SDW_OK) return false;
  bool same = size == strlen(want) && memcmp(data, want, size) == 0;
  free(data);
  return same;
}

SDW_TEST(fsutil_atomic_write_and_read) {
  char dir[512], path[600];
  make_dir(dir, sizeof dir, "atomic");
  snprintf(path, sizeof path, "%s/out.bin", dir);
  CHECK_OK(sdw_atomic_write(path, "first version", 13));
  CHECK(file_is(path, "first version"));
  CHECK_OK(sdw_atomic_write(path, "second", 6)); /* replaces */
  CHECK(file_is(path, "second"));
  CHECK_OK(sdw_atomic_write(path, NULL, 0)); /* empty file */
  CHECK(file_is(path, ""));
  CHECK(count_temporaries(dir) == 0);

  /* streaming, in pieces, including a 3 MiB one */
  size_t big = 3u << 20;
  unsigned char *buf = malloc(big);
  REQUIRE(buf);
  for (size_t i = 0; i < big; i++)
    buf[i] = (unsigned char)(i * 131 + 7);
  sdw_atomic_file *f = NULL;
  CHECK_OK(sdw_atomic_file_open(path, &f));
  REQUIRE(f);
  CHECK_OK(sdw_atomic_file_write(f, "head", 4));
  CHECK_OK(sdw_atomic_file_write(f, buf, big));
  CHECK(sdw_atomic_file_size(f) == big + 4);
  CHECK(file_is(path, "")); /* nothing visible before the commit */
  CHECK(count_temporaries(dir) == 1);
  CHECK_OK(sdw_atomic_file_commit(f));
  void *data = NULL;
  size_t size = 0;
  CHECK_OK(sdw_read_file(path, &data, &size));
  CHECK(size == big + 4 && data && memcmp(data, "head", 4) == 0 &&
        memcmp((char *)data + 4, buf, big) == 0 && ((char *)data)[size] == '\0');
  free(data);
  free(buf);
  CHECK(count_temporaries(dir) == 0);

  /* a relative path (no directory part) works too */
  char cwd[1024];
  REQUIRE(getcwd(cwd, sizeof cwd));
  REQUIRE(chdir(dir) == 0);
  CHECK_OK(sdw_atomic_write("relative.txt", "rel", 3));
  CHECK(file_is("relative.txt", "rel"));
  CHECK(count_temporaries(".") == 0);
  REQUIRE(chdir(cwd) == 0);
}

SDW_TEST(fsutil_atomic_write_failures_leave_old_file) {
  char dir[512], path[600], bad[700];
  make_dir(dir, sizeof dir, "failures");
  snprintf(path, sizeof path, "%s/keep.txt", dir);
  CHECK_OK(sdw_atomic_write(path, "old content", 11));

  /* below a regular file: ENOTDIR when creating the temporary */
  snprintf(bad, sizeof bad, "%s/child.bin", path);
  sdw_clear_error();
  CHECK(sdw_atomic_write(bad, "x", 1) == SDW_ERR_IO);
  CHECK_MSG(strstr(sdw_last_error(), bad) && strstr(sdw_last_error(), "Not a directory"),
            "message: %s", sdw_last_error());
  CHECK(file_is(path, "old content"));

  /* in a directory that does not exist */
  snprintf(bad, sizeof bad, "%s/missing/x.bin", dir);
  CHECK(sdw_atomic_write(bad, "x", 1) == SDW_ERR_IO && sdw_last_error()[0]);

  /* the target is a non-empty directory: the temporary is written, the
   * rename fails, and the temporary must be gone afterwards */
  char target[600], inner[700];
  snprintf(target, sizeof target, "%s/adir", dir);
  CHECK_OK(sdw_mkdir_p(target));
  snprintf(inner, sizeof inner, "%s/inside.txt", target);
  CHECK_OK(sdw_atomic_write(inner, "inside", 6));
  sdw_clear_error();
  CHECK(sdw_atomic_write(target, "payload", 7) == SDW_ERR_IO);
  CHECK_MSG(strstr(sdw_last_error(), target) && strstr(sdw_last_error(), "rename"), "message: %s",
            sdw_last_error());
  CHECK(count_temporaries(dir) == 0);
  CHECK(file_is(inner, "inside"));

  /* abort after writing: nothing changes, nothing is left */
  sdw_atomic_file *f = NULL;
  CHECK_OK(sdw_atomic_file_open(path, &f));
  REQUIRE(f);
  CHECK_OK(sdw_atomic_file_write(f, "new content that is never committed", 36));
  CHECK(count_temporaries(dir) == 1);
  sdw_atomic_file_abort(f);
  sdw_atomic_file_abort(NULL);
  CHECK(file_is(path, "old content"));
  CHECK(count_temporaries(dir) == 0);

  /* names that are not file names */
  CHECK(sdw_atomic_write("", "x", 1) == SDW_ERR_IO);
  snprintf(bad, sizeof bad, "%s/", dir);
  CHECK(sdw_atomic_write(bad, "x", 1) == SDW_ERR_IO);
}

SDW_TEST(fsutil_read_file_and_mkdir) {
  char dir[512], path[600];
  make_dir(dir, sizeof dir, "read");
  void *data = (void *)1;
  size_t size = 1;
  snprintf(path, sizeof path, "%s/absent", dir);
  CHECK(sdw_read_file(path, &data, &size) == SDW_ERR_NOT_FOUND && data == NULL && size == 0);
  CHECK(strstr(sdw_last_error(), path) != NULL);
  CHECK(sdw_read_file(dir, &data, &size) == SDW_ERR_IO && data == NULL);

  /* mkdir -p: nested, repeated, with doubled and trailing slashes */
  snprintf(path, sizeof path, "%s/a//b/c/", dir);
  CHECK_OK(sdw_mkdir_p(path));
  CHECK_OK(sdw_mkdir_p(path));
  struct stat st;
  snprintf(path, sizeof path, "%s/a/b/c", dir);
  CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
  /* through a regular file: refused */
  snprintf(path, sizeof path, "%s/file", dir);
  CHECK_OK(sdw_atomic_write(path, "f", 1));
  CHECK(sdw_mkdir_p(path) == SDW_ERR_IO);
  snprintf(path, sizeof path, "%s/file/sub", dir);
  CHECK(sdw_mkdir_p(path) == SDW_ERR_IO && strstr(sdw_last_error(), "file"));
  CHECK(sdw_mkdir_p("") == SDW_ERR_IO);
}

SDW_TEST(fsutil_list_files_sorted_regular_with_suffix) {
  char dir[600], path[700];
  snprintf(dir, sizeof dir, "%s/listing", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(dir));
  const char *files[] = {"b.tar", "a.tar", ".hidden.tar", "c.txt", "tar"};
  for (int i = 0; i < 5; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    CHECK_OK(sdw_atomic_write(path, "x", 1));
  }
  snprintf(path, sizeof path, "%s/dir.tar", dir);
  CHECK_OK(sdw_mkdir_p(path)); /* a directory with the suffix is not listed */
  char **names = NULL;
  int count = -1;
  CHECK_OK(sdw_list_files(dir, ".tar", &names, &count));
  CHECK(count == 2);
  if (count == 2) CHECK(strcmp(names[0], "a.tar") == 0 && strcmp(names[1], "b.tar") == 0);
  sdw_list_files_free(names, count);
  snprintf(path, sizeof path, "%s/missing", dir);
  CHECK(sdw_list_files(path, ".tar", &names, &count) == SDW_ERR_NOT_FOUND);
  CHECK(names == NULL && count == 0);
}
