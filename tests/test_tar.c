/* pipeline/tar: the reader against archives Python's tarfile and webdataset
 * wrote (tests/data/tar, made by tools/gen_tar_fixtures.py, with the expected
 * members recorded there by Python), the writer byte for byte against
 * webdataset.TarWriter's shards, round trips, and hostile archives built
 * here. Exact comparisons throughout: tar is bytes, there is no tolerance. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "pipeline/tar.h"
#include "tests/test.h"

static uint32_t fnv1a(const void *data, size_t n) {
  const uint8_t *p = data;
  uint32_t h = 0x811C9DC5u;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x01000193u;
  }
  return h;
}

/* tools/gen_tar_fixtures.py's payload(): deterministic bytes per name. */
static uint8_t *payload(const char *name, size_t size) {
  uint8_t *out = malloc(size ? size : 1);
  uint32_t seed = fnv1a(name, strlen(name));
  for (size_t i = 0; i < size; i++) {
    seed = seed * 1103515245u + 12345u;
    out[i] = (uint8_t)(seed >> 16);
  }
  return out;
}

static cJSON *load_expected(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/tar/expected.json", sdw_test_data_dir());
  void *text = NULL;
  size_t size = 0;
  if (sdw_read_file(path, &text, &size) != SDW_OK) return NULL;
  cJSON *j = cJSON_ParseWithLength(text, size);
  free(text);
  return j;
}

/* Reads every regular member of path and checks it against the list Python
 * recorded, or checks that the archive is refused. */
static void check_fixture(const char *file, const cJSON *want) {
  char path[512];
  snprintf(path, sizeof path, "%s/tar/%s", sdw_test_data_dir(), file);
  sdw_tar_reader *r = NULL;
  CHECK_OK(sdw_tar_reader_open(path, &r));
  if (!r) return;
  int expect_error = cJSON_IsTrue(cJSON_GetObjectItem(want, "error"));
  const cJSON *members = cJSON_GetObjectItem(want, "members");
  int i = 0, n = members ? cJSON_GetArraySize(members) : 0;
  sdw_status st = SDW_OK;
  for (;;) {
    sdw_tar_member m;
    int done = 0;
    st = sdw_tar_reader_next(r, &m, &done);
    if (st != SDW_OK || done) break;
    if (expect_error) continue; /* members before the hostile one may be read */
    if (i >= n) {
      CHECK_MSG(0, "%s: extra member %s", file, m.name);
      break;
    }
    const cJSON *w = cJSON_GetArrayItem(members, i++);
    const char *wname = cJSON_GetObjectItem(w, "name")->valuestring;
    CHECK_MSG(strcmp(m.name, wname) == 0, "%s: member %d is %s, want %s", file, i - 1, m.name,
              wname);
    CHECK_MSG(m.size == (size_t)cJSON_GetObjectItem(w, "size")->valuedouble, "%s: %s size %zu",
              file, m.name, m.size);
    CHECK_MSG(fnv1a(m.data, m.size) == (uint32_t)cJSON_GetObjectItem(w, "fnv1a")->valuedouble,
              "%s: %s content differs", file, m.name);
    CHECK(m.type == '0');
  }
  if (expect_error) {
    CHECK_MSG(st == SDW_ERR_FORMAT, "%s: want a format error, got %s", file, sdw_status_name(st));
    CHECK(sdw_last_error()[0] != 0);
  } else {
    CHECK_MSG(st == SDW_OK, "%s: %s", file, sdw_last_error());
    CHECK_MSG(i == n, "%s: read %d members, want %d", file, i, n);
  }
  sdw_tar_reader_close(r);
}

SDW_TEST(tar_reader_python_fixtures) {
  cJSON *exp = load_expected();
  REQUIRE(exp);
  int files = 0;
  for (const cJSON *e = exp->child; e; e = e->next) {
    if (!strcmp(e->string, "samples")) continue;
    check_fixture(e->string, e);
    files++;
  }
  CHECK(files >= 14);
  cJSON_Delete(exp);
}

/* The webdataset shards of the fixtures, rewritten by sdw with the same
 * samples and mtime, must be the same bytes. */
SDW_TEST(tar_writer_matches_webdataset) {
  cJSON *exp = load_expected();
  REQUIRE(exp);
  const cJSON *samples = cJSON_GetObjectItem(exp, "samples");
  REQUIRE(samples);
  for (int t = 0; t < 4; t++) {
    char file[32], want_path[512], got_path[512];
    snprintf(file, sizeof file, "wds_%d.tar", t);
    snprintf(want_path, sizeof want_path, "%s/tar/%s", sdw_test_data_dir(), file);
    snprintf(got_path, sizeof got_path, "%s/%s", sdw_test_tmpdir(), file);
    double mtime = cJSON_GetObjectItem(cJSON_GetObjectItem(exp, file), "mtime")->valuedouble;
    sdw_tar_writer *w = NULL;
    CHECK_OK(sdw_tar_writer_open(got_path, &w));
    REQUIRE(w);
    for (const cJSON *s = samples->child; s; s = s->next) {
      const char *key = cJSON_GetObjectItem(s, "key")->valuestring;
      for (const cJSON *m = cJSON_GetObjectItem(s, "members")->child; m; m = m->next) {
        char name[512];
        snprintf(name, sizeof name, "%s.%s", key, cJSON_GetObjectItem(m, "ext")->valuestring);
        const cJSON *text = cJSON_GetObjectItem(m, "text");
        if (cJSON_IsString(text)) {
          CHECK_OK(
              sdw_tar_writer_add(w, name, text->valuestring, strlen(text->valuestring), mtime));
        } else {
          size_t size = (size_t)cJSON_GetObjectItem(m, "size")->valuedouble;
          uint8_t *p = payload(cJSON_GetObjectItem(m, "payload")->valuestring, size);
          CHECK_OK(sdw_tar_writer_add(w, name, p, size, mtime));
          free(p);
        }
      }
    }
    CHECK_OK(sdw_tar_writer_close(w));
    void *got = NULL, *want = NULL;
    size_t ngot = 0, nwant = 0;
    CHECK_OK(sdw_read_file(got_path, &got, &ngot));
    CHECK_OK(sdw_read_file(want_path, &want, &nwant));
    if (got && want) {
      size_t first = 0;
      while (first < ngot && first < nwant && ((uint8_t *)got)[first] == ((uint8_t *)want)[first])
        first++;
      CHECK_MSG(ngot == nwant && first == ngot,
                "%s (mtime %.17g): %zu bytes vs webdataset's %zu, first difference at %zu", file,
                mtime, ngot, nwant, first);
    }
    free(got);
    free(want);
  }
  cJSON_Delete(exp);
}

SDW_TEST(tar_roundtrip_and_options) {
  char path[512];
  snprintf(path, sizeof path, "%s/round.tar", sdw_test_tmpdir());
  sdw_test_rng rng = sdw_test_rng_make(7);
  enum { N = 40 };
  char names[N][400];
  size_t sizes[N];
  sdw_tar_writer_options opt = {0644, "", "", 0};
  sdw_tar_writer *w = NULL;
  CHECK_OK(sdw_tar_writer_open_options(path, &opt, &w));
  REQUIRE(w);
  for (int i = 0; i < N; i++) {
    int kind = i % 4;
    if (kind == 0)
      snprintf(names[i], sizeof names[i], "%09d.jpg", i);
    else if (kind == 1) { /* long: a PAX path */
      int len = sdw_test_rng_int(&rng, 101, 390);
      int o = snprintf(names[i], sizeof names[i], "d%d/", i);
      while (o < len) {
        names[i][o] = (char)('a' + o % 26);
        o++;
      }
      names[i][o] = 0;
    } else if (kind == 2)
      snprintf(names[i], sizeof names[i], "ü/%d-é.txt", i);
    else
      snprintf(names[i], sizeof names[i], "x/y/%d", i);
    sizes[i] = (size_t)sdw_test_rng_int(&rng, 0, 3000);
    uint8_t *p = payload(names[i], sizes[i]);
    CHECK_OK(sdw_tar_writer_add(w, names[i], p, sizes[i], 1600000000 + i));
    free(p);
  }
  uint64_t before_close = sdw_tar_writer_size(w);
  CHECK(before_close % 512 == 0);
  CHECK_OK(sdw_tar_writer_close(w));

  void *bytes = NULL;
  size_t nbytes = 0;
  CHECK_OK(sdw_read_file(path, &bytes, &nbytes));
  CHECK(nbytes % 10240 == 0 && nbytes >= before_close + 1024);
  sdw_tar_reader *r = NULL;
  CHECK_OK(sdw_tar_reader_open_memory(bytes, nbytes, "round.tar", &r));
  REQUIRE(r);
  for (int i = 0; i <= N; i++) {
    sdw_tar_member m;
    int done = 0;
    CHECK_OK(sdw_tar_reader_next(r, &m, &done));
    if (i == N) {
      CHECK(done);
      break;
    }
    REQUIRE(!done);
    CHECK_MSG(strcmp(m.name, names[i]) == 0, "member %d: %s vs %s", i, m.name, names[i]);
    CHECK(m.size == sizes[i]);
    CHECK(m.mtime == 1600000000 + i);
    CHECK(m.offset % 512 == 0 && (const uint8_t *)m.data == (const uint8_t *)bytes + m.offset);
    uint8_t *p = payload(names[i], sizes[i]);
    CHECK(m.size == 0 || memcmp(m.data, p, m.size) == 0);
    free(p);
  }
  sdw_tar_reader_close(r);
  free(bytes);

  /* float mtime: the PAX record reads back to the floored seconds */
  w = NULL;
  CHECK_OK(sdw_tar_writer_open(path, &w));
  REQUIRE(w);
  CHECK_OK(sdw_tar_writer_add(w, "a.txt", "x", 1, 1700000000.75));
  CHECK_OK(sdw_tar_writer_close(w));
  CHECK_OK(sdw_tar_reader_open(path, &r));
  REQUIRE(r);
  sdw_tar_member m;
  int done = 0;
  CHECK_OK(sdw_tar_reader_next(r, &m, &done));
  CHECK(!done && m.mtime == 1700000000 && m.size == 1);
  sdw_tar_reader_close(r);

  /* bad names are refused by the writer; an aborted writer leaves nothing */
  char path2[512];
  snprintf(path2, sizeof path2, "%s/aborted.tar", sdw_test_tmpdir());
  CHECK_OK(sdw_tar_writer_open(path2, &w));
  REQUIRE(w);
  const char *bad[] = {"", "/abs", "../up", "a/../b", "a//b", "dir/", "./a", "a/."};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_MSG(sdw_tar_writer_add(w, bad[i], "x", 1, 0) == SDW_ERR_INVALID_ARGUMENT, "name %s",
              bad[i]);
  sdw_tar_writer_abort(w);
  void *none = NULL;
  size_t nnone = 0;
  CHECK(sdw_read_file(path2, &none, &nnone) == SDW_ERR_NOT_FOUND);
}

/* A header block with the given fields and a correct checksum. */
static void make_header(uint8_t *h, const char *name, char type, const char *size_octal) {
  memset(h, 0, 512);
  memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
  memcpy(h + 100, "0000644", 7);
  memcpy(h + 108, "0000000", 7);
  memcpy(h + 116, "0000000", 7);
  memcpy(h + 124, size_octal, strlen(size_octal));
  memcpy(h + 136, "00000000000", 11);
  h[156] = (uint8_t)type;
  memcpy(h + 257,
         "ustar\0"
         "00",
         8);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += h[i];
  char tmp[16];
  snprintf(tmp, sizeof tmp, "%06o", sum);
  memcpy(h + 148, tmp, 7);
}

static sdw_status read_all(const uint8_t *buf, size_t n, int *count) {
  sdw_tar_reader *r = NULL;
  SDW_TRY(sdw_tar_reader_open_memory(buf, n, "mem.tar", &r));
  sdw_status st = SDW_OK;
  *count = 0;
  for (;;) {
    sdw_tar_member m;
    int done = 0;
    st = sdw_tar_reader_next(r, &m, &done);
    if (st != SDW_OK || done) break;
    (*count)++;
  }
  if (st != SDW_OK) { /* errors are sticky */
    sdw_tar_member m;
    int done = 0;
    if (sdw_tar_reader_next(r, &m, &done) != st) st = SDW_ERR_INTERNAL;
  }
  sdw_tar_reader_close(r);
  return st;
}

SDW_TEST(tar_reader_hostile_inputs) {
  static uint8_t buf[8 * 512];
  int count = 0;
  /* empty archive, and one ending without zero blocks */
  CHECK(read_all(buf, 0, &count) == SDW_OK && count == 0);
  make_header(buf, "a.txt", '0', "00000000003");
  memcpy(buf + 512, "abc", 3);
  CHECK(read_all(buf, 1024, &count) == SDW_OK && count == 1);
  /* an unpadded last member is accepted (tarfile does) */
  CHECK(read_all(buf, 515, &count) == SDW_OK && count == 1);
  /* size past the end */
  make_header(buf, "a.txt", '0', "00000002000");
  CHECK(read_all(buf, 1024, &count) == SDW_ERR_FORMAT);
  /* huge size (base-256) past the end */
  make_header(buf, "a.txt", '0', "");
  buf[124] = 0x80;
  memset(buf + 125, 0xff, 11);
  memset(buf + 148, ' ', 8);
  {
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
      sum += buf[i];
    char tmp[16];
    snprintf(tmp, sizeof tmp, "%06o", sum);
    memcpy(buf + 148, tmp, 7);
  }
  CHECK(read_all(buf, 1024, &count) == SDW_ERR_FORMAT);
  /* a non-octal size */
  make_header(buf, "a.txt", '0', "0000000009x");
  CHECK(read_all(buf, 1024, &count) == SDW_ERR_FORMAT);
  /* truncated header */
  make_header(buf, "a.txt", '0', "00000000000");
  CHECK(read_all(buf, 300, &count) == SDW_ERR_FORMAT);
  /* malformed PAX records: wrong length, missing '=', no newline */
  const char *bad_pax[] = {"99 path=x\n", "9 pathx\n", "10 path=ab", "3 a\n", "x path=a\n"};
  for (size_t i = 0; i < sizeof bad_pax / sizeof bad_pax[0]; i++) {
    memset(buf, 0, sizeof buf);
    char size[16];
    snprintf(size, sizeof size, "%011o", (unsigned)strlen(bad_pax[i]));
    make_header(buf, "././@PaxHeader", 'x', size);
    memcpy(buf + 512, bad_pax[i], strlen(bad_pax[i]));
    make_header(buf + 1024, "a.txt", '0', "00000000000");
    CHECK_MSG(read_all(buf, 2048, &count) == SDW_ERR_FORMAT, "PAX record \"%s\"", bad_pax[i]);
  }
  /* a PAX path of "../x" overriding a harmless ustar name */
  memset(buf, 0, sizeof buf);
  make_header(buf, "././@PaxHeader", 'x', "00000000015");
  memcpy(buf + 512, "13 path=../x\n", 13);
  make_header(buf + 1024, "harmless", '0', "00000000000");
  CHECK(read_all(buf, 2048, &count) == SDW_ERR_FORMAT);
  /* a PAX size overriding the header's, within bounds */
  memset(buf, 0, sizeof buf);
  make_header(buf, "././@PaxHeader", 'x', "00000000011");
  memcpy(buf + 512, "9 size=2\n", 9);
  make_header(buf + 1024, "p.txt", '0', "00000000000");
  memcpy(buf + 1536, "hi", 2);
  make_header(buf + 2048, "__bad_header_if_size_ignored", 'Q', "00000000000");
  CHECK(read_all(buf, 2560 + 1024, &count) == SDW_OK && count == 1);
  /* an extended header with nothing after it */
  memset(buf, 0, sizeof buf);
  make_header(buf, "././@LongLink", 'L', "00000000004");
  memcpy(buf + 512, "abc", 4);
  CHECK(read_all(buf, 1024, &count) == SDW_ERR_FORMAT);
}

/* tests/cli/tar_interop.sh: writes shards for Python to read when
 * SDW_TAR_INTEROP_DIR is set (nothing to check here otherwise). */
SDW_TEST(tar_writer_interop_shards) {
  const char *dir = getenv("SDW_TAR_INTEROP_DIR");
  if (!dir || !*dir) return;
  char path[1024];
  snprintf(path, sizeof path, "%s/00000.tar", dir);
  sdw_tar_writer *w = NULL;
  CHECK_OK(sdw_tar_writer_open(path, &w));
  REQUIRE(w);
  for (int i = 0; i < 50; i++) {
    char key[128], name[160], text[64];
    snprintf(key, sizeof key, "%09d", i);
    if (i == 7)
      snprintf(key, sizeof key, "%s",
               "k-ünï-"
               "0123456789012345678901234567890123456789"
               "0123456789012345678901234567890123456789");
    size_t size = (size_t)(i * 97 % 3000);
    snprintf(name, sizeof name, "%s.jpg", key);
    uint8_t *p = payload(name, size);
    CHECK_OK(sdw_tar_writer_add(w, name, p, size, 1700000000.125 + i));
    free(p);
    snprintf(name, sizeof name, "%s.json", key);
    snprintf(text, sizeof text, "{\"key\": \"%d\"}", i);
    CHECK_OK(sdw_tar_writer_add(w, name, text, strlen(text), 1700000000.125 + i));
    snprintf(name, sizeof name, "%s.txt", key);
    snprintf(text, sizeof text, "caption %d", i);
    CHECK_OK(sdw_tar_writer_add(w, name, text, strlen(text), 1700000000.125 + i));
  }
  CHECK_OK(sdw_tar_writer_close(w));
}
