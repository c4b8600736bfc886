/* The latent store (core/base/latent_store.h): round trip through the writer
 * and reader, and the refusals of incomplete or corrupt stores. Exact
 * comparisons throughout: the store copies bits, it computes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/latent_store.h"
#include "core/base/safetensors.h"
#include "tests/test.h"

enum { C = 4, H = 3, W = 2, L = 5, D = 3 };

/* A chunk of n samples whose values encode (chunk, sample, element), so a
 * sample read from the wrong place cannot compare equal. */
typedef struct fixture {
  int64_t n;
  uint16_t lat[8 * C * H * W];
  int32_t ids[8 * L], mask[8 * L];
  uint16_t ctx[8 * L * D];
  char keybuf[8][32], capbuf[8][32];
  const char *keys[8], *caps[8];
  sdw_latent_chunk chunk;
} fixture;

static void fixture_make(fixture *f, int chunk, int64_t n, bool with_context) {
  memset(f, 0, sizeof *f);
  f->n = n;
  for (int64_t i = 0; i < n * C * H * W; i++)
    f->lat[i] = sdw_f32_to_f16((float)(chunk * 1000 + i) * 0.25f);
  for (int64_t i = 0; i < n * L; i++) {
    f->ids[i] = (int32_t)(49406 + chunk * 100 + i);
    f->mask[i] = (int32_t)(i % 2);
  }
  for (int64_t i = 0; i < n * L * D; i++)
    f->ctx[i] = sdw_f32_to_f16(-(float)(chunk * 500 + i));
  for (int64_t i = 0; i < n; i++) {
    snprintf(f->keybuf[i], sizeof f->keybuf[i], "shard%d::k%d", chunk, (int)i);
    /* captions of varied length, one empty, one non-ASCII */
    if (i == 1)
      f->capbuf[i][0] = '\0';
    else
      snprintf(f->capbuf[i], sizeof f->capbuf[i], "caption %d \xc3\xa9 %.*s", (int)i, (int)i,
               "xxxxxxxx");
    f->keys[i] = f->keybuf[i];
    f->caps[i] = f->capbuf[i];
  }
  f->chunk = (sdw_latent_chunk){.count = n,
                                .channels = C,
                                .height = H,
                                .width = W,
                                .seq_len = L,
                                .context_dim = with_context ? D : 0,
                                .latents = f->lat,
                                .input_ids = f->ids,
                                .attention_mask = f->mask,
                                .context = with_context ? f->ctx : NULL,
                                .keys = f->keys,
                                .captions = f->caps};
}

static void chunk_path(char *buf, size_t cap, const char *dir, int i) {
  snprintf(buf, cap, "%s/chunk-%05d.safetensors", dir, i);
}

/* Writes a 2-chunk store (3 + 2 samples) into dir. */
static void write_store(const char *dir, fixture f[2], bool with_context) {
  char path[512];
  CHECK_OK(sdw_mkdir_p(dir));
  fixture_make(&f[0], 0, 3, with_context);
  fixture_make(&f[1], 1, 2, with_context);
  for (int i = 0; i < 2; i++) {
    chunk_path(path, sizeof path, dir, i);
    CHECK_OK(sdw_latent_chunk_write(path, &f[i].chunk));
  }
  CHECK_OK(sdw_latent_store_finish(dir, "train", 2, 0.18215, 64, "test vae"));
}

SDW_TEST(latent_store_round_trip) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/ls-%s", sdw_test_tmpdir(), __func__);
  fixture *f = calloc(2, sizeof *f);
  REQUIRE(f);
  write_store(dir, f, true);
  sdw_latent_store *s = NULL;
  CHECK_OK(sdw_latent_store_open(dir, &s));
  REQUIRE(s);
  CHECK(sdw_latent_store_count(s) == 5);
  int c, h, w;
  sdw_latent_store_shape(s, &c, &h, &w);
  CHECK(c == C && h == H && w == W);
  CHECK(sdw_latent_store_seq_len(s) == L);
  CHECK(sdw_latent_store_context_dim(s) == D);
  CHECK(sdw_latent_store_scaling_factor(s) == 0.18215);
  for (int64_t i = 0; i < 5; i++) {
    const fixture *fx = i < 3 ? &f[0] : &f[1];
    int64_t j = i < 3 ? i : i - 3, len;
    CHECK(memcmp(sdw_latent_store_latent(s, i), fx->lat + j * C * H * W, C * H * W * 2) == 0);
    CHECK(memcmp(sdw_latent_store_input_ids(s, i), fx->ids + j * L, L * 4) == 0);
    CHECK(memcmp(sdw_latent_store_attention_mask(s, i), fx->mask + j * L, L * 4) == 0);
    CHECK(memcmp(sdw_latent_store_context(s, i), fx->ctx + j * L * D, L * D * 2) == 0);
    const char *k = sdw_latent_store_key(s, i, &len);
    CHECK(len == (int64_t)strlen(fx->keys[j]) && memcmp(k, fx->keys[j], (size_t)len) == 0);
    const char *cap = sdw_latent_store_caption(s, i, &len);
    CHECK(len == (int64_t)strlen(fx->caps[j]) &&
          (len == 0 || memcmp(cap, fx->caps[j], (size_t)len) == 0));
  }
  sdw_latent_store_close(s);

  /* the chunk is an ordinary safetensors file with the documented tensors */
  char path[1024];
  chunk_path(path, sizeof path, dir, 1);
  sdw_safetensors *st = NULL;
  CHECK_OK(sdw_safetensors_open(path, &st));
  REQUIRE(st);
  const char *fmt = sdw_safetensors_metadata_get(st, "format");
  CHECK(fmt && strcmp(fmt, "sdw-latent-chunk/1") == 0);
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, "latents");
  CHECK(e && e->dtype == SDW_F16 && e->ndim == 4 && e->shape[0] == 2 && e->shape[1] == C);
  sdw_safetensors_close(st);
  free(f);
}

SDW_TEST(latent_store_without_context) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/ls-%s", sdw_test_tmpdir(), __func__);
  fixture *f = calloc(2, sizeof *f);
  REQUIRE(f);
  write_store(dir, f, false);
  sdw_latent_store *s = NULL;
  CHECK_OK(sdw_latent_store_open(dir, &s));
  REQUIRE(s);
  CHECK(sdw_latent_store_context_dim(s) == 0);
  CHECK(sdw_latent_store_context(s, 4) == NULL);
  sdw_latent_store_close(s);
  free(f);
}

static sdw_status reopen(const char *dir) {
  sdw_latent_store *s = NULL;
  sdw_status st = sdw_latent_store_open(dir, &s);
  sdw_latent_store_close(s);
  return st;
}

SDW_TEST(latent_store_incomplete_and_corrupt) {
  char dir[512], path[1024];
  snprintf(dir, sizeof dir, "%s/ls-%s", sdw_test_tmpdir(), __func__);
  fixture *f = calloc(2, sizeof *f);
  REQUIRE(f);

  /* chunks written but no index.json yet: incomplete = not found */
  CHECK_OK(sdw_mkdir_p(dir));
  fixture_make(&f[0], 0, 3, false);
  chunk_path(path, sizeof path, dir, 0);
  CHECK_OK(sdw_latent_chunk_write(path, &f[0].chunk));
  CHECK(reopen(dir) == SDW_ERR_NOT_FOUND);
  CHECK(reopen("/nonexistent/store") == SDW_ERR_NOT_FOUND);

  /* finishing with a chunk that is missing fails and writes no index */
  CHECK(sdw_latent_store_finish(dir, "train", 2, 0.18215, 64, "v") != SDW_OK);
  CHECK(reopen(dir) == SDW_ERR_NOT_FOUND);

  /* a chunk whose shape differs from the first: refused by finish */
  fixture_make(&f[1], 1, 2, true);
  chunk_path(path, sizeof path, dir, 1);
  CHECK_OK(sdw_latent_chunk_write(path, &f[1].chunk));
  CHECK(sdw_latent_store_finish(dir, "train", 2, 0.18215, 64, "v") == SDW_ERR_FORMAT);

  /* a good store, then damage it in different ways */
  write_store(dir, f, false);
  CHECK_OK(reopen(dir));
  chunk_path(path, sizeof path, dir, 1);
  void *orig;
  size_t size;
  CHECK_OK(sdw_read_file(path, &orig, &size));
  REQUIRE(orig);

  /* truncated chunk */
  CHECK_OK(sdw_atomic_write(path, orig, size - 7));
  CHECK(reopen(dir) == SDW_ERR_FORMAT);
  /* a header byte flipped (same size): the JSON no longer parses */
  unsigned char *bad = malloc(size);
  REQUIRE(bad);
  memcpy(bad, orig, size);
  bad[9] = '#';
  CHECK_OK(sdw_atomic_write(path, bad, size));
  CHECK(reopen(dir) == SDW_ERR_FORMAT);
  /* chunk deleted */
  CHECK(unlink(path) == 0);
  CHECK(reopen(dir) == SDW_ERR_FORMAT);
  /* a chunk of another count replacing it (same shapes, different size) */
  fixture_make(&f[1], 1, 4, false);
  CHECK_OK(sdw_latent_chunk_write(path, &f[1].chunk));
  CHECK(reopen(dir) == SDW_ERR_FORMAT);
  /* restored: fine again */
  CHECK_OK(sdw_atomic_write(path, orig, size));
  CHECK_OK(reopen(dir));

  /* an index naming a file outside the directory */
  char ipath[1024];
  snprintf(ipath, sizeof ipath, "%s/index.json", dir);
  const char *evil = "{\"format\":\"sdw-latents/1\",\"split\":\"train\",\"count\":3,"
                     "\"latent_shape\":[4,3,2],\"dtype\":\"F16\",\"scaling_factor\":0.18215,"
                     "\"seq_len\":5,\"context_dim\":0,\"chunks\":[{\"file\":\"../x\","
                     "\"count\":3,\"bytes\":10,\"sha256\":\"\"}]}";
  CHECK_OK(sdw_atomic_write(ipath, evil, strlen(evil)));
  CHECK(reopen(dir) == SDW_ERR_FORMAT);
  /* not JSON at all */
  CHECK_OK(sdw_atomic_write(ipath, "{", 1));
  CHECK(reopen(dir) == SDW_ERR_FORMAT);

  /* a chunk whose key offsets point past the key bytes */
  int64_t shape4[4] = {1, C, H, W}, shape2[2] = {1, L}, nb[1] = {2}, no[1] = {2};
  int64_t badoff[2] = {0, 99};
  uint16_t lat[C * H * W] = {0};
  int32_t ids[L] = {0};
  sdw_safetensors_writer *w = NULL;
  CHECK_OK(sdw_safetensors_writer_create(&w));
  REQUIRE(w);
  CHECK_OK(sdw_safetensors_writer_set_metadata(w, "format", "sdw-latent-chunk/1"));
  CHECK_OK(sdw_safetensors_writer_add(w, "latents", SDW_F16, 4, shape4, lat));
  CHECK_OK(sdw_safetensors_writer_add(w, "input_ids", SDW_I32, 2, shape2, ids));
  CHECK_OK(sdw_safetensors_writer_add(w, "attention_mask", SDW_I32, 2, shape2, ids));
  CHECK_OK(sdw_safetensors_writer_add(w, "keys.bytes", SDW_U8, 1, nb, "ab"));
  CHECK_OK(sdw_safetensors_writer_add(w, "keys.offsets", SDW_I64, 1, no, badoff));
  CHECK_OK(sdw_safetensors_writer_add(w, "captions.bytes", SDW_U8, 1, nb, "ab"));
  CHECK_OK(sdw_safetensors_writer_add(w, "captions.offsets", SDW_I64, 1, no, badoff));
  char d2[512];
  snprintf(d2, sizeof d2, "%s/ls-offsets", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(d2));
  chunk_path(path, sizeof path, d2, 0);
  CHECK_OK(sdw_safetensors_writer_write(w, path));
  sdw_safetensors_writer_destroy(w);
  CHECK(sdw_latent_store_finish(d2, "train", 1, 0.18215, 64, "v") == SDW_ERR_FORMAT);

  free(bad);
  free(orig);
  free(f);
}
