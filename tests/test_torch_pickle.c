/* The ZIP reader (core/base/zip_reader.h) and the restricted unpickler
 * (core/base/torch_pickle.h).
 *
 * Reference: tests/data/goldens/seed-checkpoint-tiny (README.txt): a
 * checkpoint written by torch.save (torch 1.13) with the seed's format, and
 * checkpoint.safetensors holding the same tensors made contiguous by
 * PyTorch itself, plus checkpoint.json with every scalar and every tensor's
 * shape and stride as PyTorch reported them. Tensors are compared BIT FOR
 * BIT (memcmp): reading is a copy, no arithmetic, so any difference is a
 * bug (a stride honoured wrongly shows up at once in the 16 channels_last
 * convolution weights).
 *
 * Hostile and broken inputs are built byte by byte with tests/test_pt_util.h
 * (a pickle assembler following pickle.py's encodings and a ZIP writer
 * following APPNOTE.TXT): forbidden globals, truncations, out-of-bounds and
 * overflowing strides, huge sizes, wrong CRCs, deflated and ZIP64 archives.
 * Each must give its status and a one-line message, never a crash (ASan
 * and UBSan builds run these too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/fsutil.h"
#include "core/base/json.h"
#include "core/base/safetensors.h"
#include "core/base/torch_pickle.h"
#include "core/base/zip_reader.h"
#include "tests/test.h"
#include "tests/test_pt_util.h"

static void golden_path(char *buf, size_t size, const char *file) {
  snprintf(buf, size, "%s/goldens/seed-checkpoint-tiny/%s", sdw_test_data_dir(), file);
}

static bool message_has(const char *needle) { return strstr(sdw_last_error(), needle) != NULL; }

/* One line, naming something. */
static bool one_line_message(void) {
  const char *m = sdw_last_error();
  return m[0] != '\0' && strchr(m, '\n') == NULL;
}

/* t's strides equal checkpoint.json's layout[name].stride (PyTorch's). */
static void check_stride(const sdw_json_obj *layout, const char *name, const sdw_pt_tensor *t,
                         const char *what) {
  sdw_json_obj entry;
  int64_t stride[8];
  size_t n = 0;
  if (sdw_json_get_object(layout, name, &entry) == SDW_OK &&
      sdw_json_get_int_array(&entry, "stride", stride, 8, &n) == SDW_OK) {
    bool same = n == (size_t)t->ndim;
    for (size_t k = 0; same && k < n; k++)
      same = stride[k] == t->stride[k];
    CHECK_MSG(same, "'%s': strides differ from PyTorch's", what);
  } else {
    CHECK_MSG(false, "checkpoint.json has no layout for '%s'", what);
  }
}

/* Compares every tensor of dict d (a state dict of the .pt) with the golden
 * safetensors tensors prefix + name, bit for bit; also each stride with
 * checkpoint.json's layout[section][name].stride. Returns the number of
 * non-contiguous tensors seen. */
static int compare_state(sdw_pt *f, const sdw_pt_value *d, const sdw_safetensors *st,
                         const char *prefix, const sdw_json_obj *layout) {
  int strided = 0;
  if (!d || d->kind != SDW_PT_DICT) {
    CHECK_MSG(false, "no state dict for %s", prefix);
    return 0;
  }
  for (size_t i = 0; i < d->u.dict.count; i++) {
    const char *name = sdw_pt_as_str(d->u.dict.keys[i]);
    const sdw_pt_tensor *t = sdw_pt_as_tensor(d->u.dict.values[i]);
    if (!name || !t) {
      CHECK_MSG(false, "%s entry %zu is not (str, tensor)", prefix, i);
      continue;
    }
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    const sdw_safetensors_entry *e = sdw_safetensors_find(st, key);
    if (!e) {
      CHECK_MSG(false, "golden has no '%s'", key);
      continue;
    }
    bool shape_ok = e->ndim == t->ndim && e->dtype == t->dtype;
    for (int k = 0; shape_ok && k < t->ndim; k++)
      shape_ok = e->shape[k] == t->shape[k];
    CHECK_MSG(shape_ok, "'%s': shape or dtype differs from the golden", key);
    if (!shape_ok) continue;
    if (!sdw_pt_tensor_is_contiguous(t)) strided++;
    void *buf = malloc(e->nbytes ? e->nbytes : 1);
    CHECK_OK(sdw_pt_tensor_read(f, t, buf, e->nbytes));
    CHECK_MSG(memcmp(buf, e->data, e->nbytes) == 0, "'%s' differs from the golden", key);
    free(buf);
    check_stride(layout, name, t, key);
  }
  return strided;
}

SDW_TEST(torch_pickle_golden_tensors_bit_exact) {
  char pt_path[512], st_path[512], json_path[512];
  golden_path(pt_path, sizeof pt_path, "checkpoint.pt");
  golden_path(st_path, sizeof st_path, "checkpoint.safetensors");
  golden_path(json_path, sizeof json_path, "checkpoint.json");
  sdw_pt *f = NULL;
  sdw_safetensors *st = NULL;
  sdw_json_doc *doc = NULL;
  CHECK_OK(sdw_pt_open(pt_path, &f));
  CHECK_OK(sdw_safetensors_open(st_path, &st));
  CHECK_OK(sdw_json_load_file(json_path, &doc));
  if (!f || !st || !doc) goto done;
  sdw_json_obj root, layout, lu, le, lm, lv;
  memset(&lm, 0, sizeof lm);
  CHECK_OK(sdw_json_root(doc, &root));
  CHECK_OK(sdw_json_get_object(&root, "layout", &layout));
  CHECK_OK(sdw_json_get_object(&layout, "unet_state_dict", &lu));
  const sdw_pt_value *r = sdw_pt_root(f);
  REQUIRE(r->kind == SDW_PT_DICT);
  const sdw_pt_value *unet = sdw_pt_dict_get(r, "unet_state_dict");
  const sdw_pt_value *ema = sdw_pt_dict_get(sdw_pt_dict_get(r, "ema_state_dict"), "shadow");
  REQUIRE(unet && ema && unet->u.dict.count == 158 && ema->u.dict.count == 158);
  /* The README: 16 of the 4-D tensors are channels_last (stride[1] == 1). */
  int strided = compare_state(f, unet, st, "unet_state_dict.", &lu);
  CHECK_MSG(strided == 16, "unet_state_dict: %d strided tensors, the README says 16", strided);
  CHECK_OK(sdw_json_get_object(&layout, "ema_state_dict.shadow", &le));
  strided = compare_state(f, ema, st, "ema.shadow.", &le);
  CHECK_MSG(strided == 16, "ema shadow: %d strided tensors", strided);

  /* AdamW moments: state keyed by parameter index, names from param_order. */
  const char *order[200];
  size_t np = 0;
  CHECK_OK(sdw_json_get_string_array(&root, "param_order", order, 200, &np));
  REQUIRE(np == 158);
  const sdw_pt_value *state = sdw_pt_dict_get(sdw_pt_dict_get(r, "optimizer_state_dict"), "state");
  REQUIRE(state && state->kind == SDW_PT_DICT && state->u.dict.count == 158);
  CHECK_OK(sdw_json_get_object(&layout, "optimizer_state_dict.state", &lm));
  int strided_m = 0;
  for (size_t i = 0; i < np; i++) {
    const sdw_pt_value *ps = sdw_pt_dict_get_int(state, (int64_t)i);
    REQUIRE(ps);
    char index[24];
    snprintf(index, sizeof index, "%zu", i);
    CHECK_OK(sdw_json_get_object(&lm, index, &lv));
    static const char *const moments[2] = {"exp_avg", "exp_avg_sq"};
    for (int k = 0; k < 2; k++) {
      const sdw_pt_tensor *t = sdw_pt_as_tensor(sdw_pt_dict_get(ps, moments[k]));
      char key[256];
      snprintf(key, sizeof key, "optimizer.%s.%s", moments[k], order[i]);
      const sdw_safetensors_entry *e = sdw_safetensors_find(st, key);
      REQUIRE(t && e && e->nbytes == sdw_pt_tensor_nbytes(t));
      strided_m += !sdw_pt_tensor_is_contiguous(t);
      check_stride(&lv, moments[k], t, key);
      void *buf = malloc(e->nbytes);
      CHECK_OK(sdw_pt_tensor_read(f, t, buf, e->nbytes));
      CHECK_MSG(memcmp(buf, e->data, e->nbytes) == 0, "'%s' differs from the golden", key);
      free(buf);
    }
    /* step: a float32 0-dim tensor holding 3.0 (README) */
    const sdw_pt_tensor *step = sdw_pt_as_tensor(sdw_pt_dict_get(ps, "step"));
    REQUIRE(step && step->ndim == 0 && step->numel == 1 && step->dtype == SDW_F32);
    float s = 0;
    CHECK_OK(sdw_pt_tensor_read(f, step, &s, sizeof s));
    CHECK(s == 3.0f);
  }
  CHECK_MSG(strided_m == 32, "AdamW moments: %d strided tensors, expected 2 x 16", strided_m);

  /* Scalars against checkpoint.json. */
  int64_t epoch = 0, gstep = 0, ema_steps = 0, last_epoch = 0;
  double best = 0, decay = 0, v = 0;
  CHECK_OK(sdw_json_get_int(&root, "epoch", &epoch));
  CHECK_OK(sdw_json_get_int(&root, "global_step", &gstep));
  CHECK_OK(sdw_json_get_double(&root, "best_loss", &best));
  CHECK_OK(sdw_json_get_int(&root, "ema_step_count", &ema_steps));
  CHECK_OK(sdw_json_get_double(&root, "ema_decay", &decay));
  int64_t i64 = -1;
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "epoch"), &i64) && i64 == epoch);
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "global_step"), &i64) && i64 == gstep);
  CHECK(sdw_pt_as_double(sdw_pt_dict_get(r, "best_loss"), &v) && v == best);
  const sdw_pt_value *emad = sdw_pt_dict_get(r, "ema_state_dict");
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(emad, "step_count"), &i64) && i64 == ema_steps);
  CHECK(sdw_pt_as_double(sdw_pt_dict_get(emad, "decay"), &v) && v == decay);
  sdw_json_obj sched;
  CHECK_OK(sdw_json_get_object(&root, "lr_scheduler_state_dict", &sched));
  CHECK_OK(sdw_json_get_int(&sched, "last_epoch", &last_epoch));
  const sdw_pt_value *sd = sdw_pt_dict_get(r, "lr_scheduler_state_dict");
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(sd, "last_epoch"), &i64) && i64 == last_epoch);
  /* a nested list of dicts, with a memoised (BINGET) list shared by both */
  const sdw_pt_value *subs = sdw_pt_dict_get(sd, "_schedulers");
  REQUIRE(subs && subs->kind == SDW_PT_LIST && subs->u.seq.count == 2);
  CHECK(sdw_pt_as_double(sdw_pt_dict_get(subs->u.seq.items[1], "T_max"), &v) && v == 180);
  const sdw_pt_value *groups =
      sdw_pt_dict_get(sdw_pt_dict_get(r, "optimizer_state_dict"), "param_groups");
  REQUIRE(groups && groups->kind == SDW_PT_LIST && groups->u.seq.count == 1);
  const sdw_pt_value *g0 = groups->u.seq.items[0];
  CHECK(sdw_pt_dict_get(g0, "foreach") && sdw_pt_dict_get(g0, "foreach")->kind == SDW_PT_NONE);
  CHECK(sdw_pt_dict_get(g0, "amsgrad") && sdw_pt_dict_get(g0, "amsgrad")->kind == SDW_PT_BOOL);
  const sdw_pt_value *betas = sdw_pt_dict_get(g0, "betas");
  CHECK(betas && betas->kind == SDW_PT_TUPLE && betas->u.seq.count == 2);
done:
  sdw_json_free(doc);
  sdw_safetensors_close(st);
  sdw_pt_close(f);
}

/* --- hand-built checkpoints --------------------------------------------------------- */

/* A zip holding archive/data.pkl = p plus storages data/0 .. data/(n-1). */
static unsigned char *make_ckpt(const pk *p, const void *const *storages, const size_t *sizes,
                                int n, bool zip64, size_t *size) {
  zentry e[8];
  char names[8][32];
  e[0] = (zentry){"archive/data.pkl", p->b, p->n, false};
  for (int i = 0; i < n && i < 6; i++) {
    snprintf(names[i], sizeof names[i], "archive/data/%d", i);
    e[i + 1] = (zentry){names[i], storages[i], sizes[i], false};
  }
  e[n + 1] = (zentry){"archive/version", "3\n", 2, false};
  return zip_build(e, n + 2, zip64, size);
}

/* Opens a one-tensor checkpoint {"t": tensor(size, stride, offset) on a
 * float storage of storage_numel elements} and returns the status. */
static sdw_status open_one_tensor(int64_t storage_numel, int64_t offset, int nd,
                                  const int64_t *size, const int64_t *stride, sdw_pt **out,
                                  unsigned char **zip_out) {
  pk p = {0};
  pk_proto(&p);
  pk_op(&p, '}');
  pk_str(&p, "t");
  pk_tensor(&p, "FloatStorage", "0", storage_numel, offset, nd, size, stride);
  pk_op(&p, 's');
  pk_op(&p, '.');
  size_t bytes = (size_t)(storage_numel > 0 && storage_numel < 4096 ? storage_numel : 0) * 4;
  float *data = calloc(bytes / 4 + 1, 4);
  const void *st[1] = {data};
  size_t zn;
  unsigned char *zip = make_ckpt(&p, st, &bytes, 1, false, &zn);
  sdw_status s = sdw_pt_open_memory(zip, zn, "hand.pt", out);
  /* the reader does not copy: the bytes live as long as *out */
  if (s == SDW_OK)
    *zip_out = zip;
  else
    free(zip);
  free(data);
  free(p.b);
  return s;
}

SDW_TEST(torch_pickle_strided_gather) {
  /* A [3, 4] tensor stored transposed (stride (1, 3)) at offset 2 of a
   * 20-element storage, and a channels_last [2, 3, 2, 2] one: the reader
   * must return row-major element (i, j) = storage[offset + i*s0 + j*s1]. */
  float storage[24];
  for (int i = 0; i < 24; i++)
    storage[i] = (float)(100 + i);
  pk p = {0};
  pk_proto(&p);
  pk_op(&p, '}');
  pk_op(&p, '(');
  pk_str(&p, "t");
  pk_tensor(&p, "FloatStorage", "0", 24, 2, 2, (int64_t[]){3, 4}, (int64_t[]){1, 3});
  pk_str(&p, "cl");
  pk_tensor(&p, "FloatStorage", "0", 24, 0, 4, (int64_t[]){2, 3, 2, 2}, (int64_t[]){12, 1, 6, 3});
  pk_str(&p, "scalar");
  pk_tensor(&p, "FloatStorage", "0", 24, 23, 0, NULL, NULL);
  pk_op(&p, 'u');
  pk_op(&p, '.');
  const void *st[1] = {storage};
  size_t sz[1] = {sizeof storage}, zn;
  for (int zip64 = 0; zip64 < 2; zip64++) {
    unsigned char *zip = make_ckpt(&p, st, sz, 1, zip64, &zn);
    sdw_pt *f = NULL;
    CHECK_OK(sdw_pt_open_memory(zip, zn, "strided.pt", &f));
    if (f) {
      const sdw_pt_tensor *t = sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "t"));
      const sdw_pt_tensor *cl = sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "cl"));
      const sdw_pt_tensor *sc = sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "scalar"));
      REQUIRE(t && cl && sc);
      CHECK(!sdw_pt_tensor_is_contiguous(t) && !sdw_pt_tensor_is_contiguous(cl));
      float got[24];
      CHECK_OK(sdw_pt_tensor_read(f, t, got, 12 * sizeof(float)));
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
          CHECK(got[i * 4 + j] == storage[2 + i * 1 + j * 3]);
      CHECK_OK(sdw_pt_tensor_read(f, cl, got, 24 * sizeof(float)));
      for (int o = 0; o < 2; o++)
        for (int c = 0; c < 3; c++)
          for (int h = 0; h < 2; h++)
            for (int w = 0; w < 2; w++)
              CHECK(got[((o * 3 + c) * 2 + h) * 2 + w] == storage[o * 12 + c + h * 6 + w * 3]);
      CHECK(sc->ndim == 0 && sc->numel == 1);
      CHECK_OK(sdw_pt_tensor_read(f, sc, got, sizeof(float)));
      CHECK(got[0] == 123.0f);
      const void *direct;
      CHECK(sdw_pt_tensor_data(f, t, &direct) == SDW_ERR_UNSUPPORTED);
      CHECK_OK(sdw_pt_tensor_data(f, sc, &direct));
      CHECK(direct && memcmp(direct, &storage[23], 4) == 0);
      CHECK(sdw_pt_tensor_read(f, t, got, 4) == SDW_ERR_INVALID_ARGUMENT);
    }
    sdw_pt_close(f);
    free(zip);
  }
  free(p.b);
}

SDW_TEST(torch_pickle_bad_strides_refused) {
  sdw_pt *f = NULL;
  unsigned char *zip = NULL;
  /* reaches element 2 + 2*1 + 3*3 = 13 of a 12-element storage */
  CHECK(open_one_tensor(12, 2, 2, (int64_t[]){3, 4}, (int64_t[]){1, 3}, &f, &zip) ==
        SDW_ERR_FORMAT);
  CHECK(message_has("out of bounds") && one_line_message());
  /* one past the end by the offset alone */
  CHECK(open_one_tensor(12, 12, 1, (int64_t[]){1}, (int64_t[]){1}, &f, &zip) == SDW_ERR_FORMAT);
  /* strides whose extent overflows 64 bits */
  CHECK(open_one_tensor(16, 0, 2, (int64_t[]){4, 4}, (int64_t[]){INT64_MAX, 1}, &f, &zip) ==
        SDW_ERR_FORMAT);
  CHECK(message_has("overflow"));
  /* sizes whose product overflows 64 bits */
  CHECK(open_one_tensor(16, 0, 3, (int64_t[]){INT64_C(1) << 40, INT64_C(1) << 40, 1 << 20},
                        (int64_t[]){0, 0, 0}, &f, &zip) == SDW_ERR_FORMAT);
  CHECK(message_has("overflows"));
  /* 2^62 elements (zero strides keep them in bounds) whose bytes overflow */
  CHECK(open_one_tensor(16, 0, 2, (int64_t[]){INT64_C(1) << 31, INT64_C(1) << 31},
                        (int64_t[]){0, 0}, &f, &zip) == SDW_ERR_FORMAT);
  CHECK(message_has("overflows"));
  /* negative size and stride */
  CHECK(open_one_tensor(16, 0, 1, (int64_t[]){-1}, (int64_t[]){1}, &f, &zip) == SDW_ERR_FORMAT);
  CHECK(open_one_tensor(16, 4, 1, (int64_t[]){2}, (int64_t[]){-1}, &f, &zip) == SDW_ERR_FORMAT);
  CHECK(message_has("negative"));
  /* more dims than supported */
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK(open_one_tensor(16, 0, 9, nine, nine, &f, &zip) == SDW_ERR_FORMAT);
  /* a storage whose numel does not match its entry */
  CHECK(open_one_tensor(5000, 0, 1, (int64_t[]){4}, (int64_t[]){1}, &f, &zip) == SDW_ERR_FORMAT);
  CHECK(message_has("bytes"));
  CHECK(f == NULL);
  /* empty tensors are fine, anywhere up to the end */
  CHECK_OK(open_one_tensor(16, 16, 2, (int64_t[]){0, 5}, (int64_t[]){5, 1}, &f, &zip));
  if (f) CHECK(sdw_pt_tensor_nbytes(sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "t"))) == 0);
  sdw_pt_close(f);
  free(zip);
  /* 2^40 elements addressed through zero strides: legal, and never
   * allocated by the reader (reading needs the caller's 4 TiB buffer) */
  f = NULL, zip = NULL;
  CHECK_OK(open_one_tensor(16, 0, 2, (int64_t[]){1 << 20, 1 << 20}, (int64_t[]){0, 0}, &f, &zip));
  if (f) {
    const sdw_pt_tensor *t = sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "t"));
    float small[4];
    CHECK(t && t->numel == INT64_C(1) << 40);
    CHECK(sdw_pt_tensor_read(f, t, small, sizeof small) == SDW_ERR_INVALID_ARGUMENT);
  }
  sdw_pt_close(f);
  free(zip);
}

/* A raw pickle must be refused with SDW_ERR_FORMAT and a message naming
 * global; nothing may run: each pickle would create canary if executed. */
static void expect_refused(const pk *p, const char *global) {
  sdw_pt *f = NULL;
  sdw_status s = sdw_pt_parse_pickle(p->b, p->n, "evil.pt", &f);
  CHECK_MSG(s == SDW_ERR_FORMAT && f == NULL, "%s: status %s", global, sdw_status_name(s));
  char want[160];
  snprintf(want, sizeof want,
           "evil.pt: refuses to load: the pickle asks for '%s' (only tensors, "
           "dicts, lists, numbers and strings are allowed)",
           global);
  CHECK_MSG(strcmp(sdw_last_error(), want) == 0, "message: %s", sdw_last_error());
  /* the same inside a checkpoint archive */
  size_t zn;
  unsigned char *zip = make_ckpt(p, NULL, NULL, 0, false, &zn);
  s = sdw_pt_open_memory(zip, zn, "evil.pt", &f);
  CHECK(s == SDW_ERR_FORMAT && f == NULL && strcmp(sdw_last_error(), want) == 0);
  free(zip);
}

SDW_TEST(torch_pickle_refuses_other_globals) {
  char canary[600];
  snprintf(canary, sizeof canary, "%s/pwned", sdw_test_tmpdir());
  char cmd[700];
  snprintf(cmd, sizeof cmd, "touch %s", canary);
  /* os.system(cmd) through GLOBAL (pickle writes it as posix.system) */
  static const char *const modules[][2] = {
      {"os", "system"}, {"posix", "system"}, {"builtins", "eval"}, {"subprocess", "call"}};
  for (int i = 0; i < 4; i++) {
    pk p = {0};
    pk_proto(&p);
    pk_global(&p, modules[i][0], modules[i][1]);
    pk_str(&p, cmd);
    pk_op(&p, 0x85);
    pk_op(&p, 'R');
    pk_op(&p, '.');
    char name[64];
    snprintf(name, sizeof name, "%s.%s", modules[i][0], modules[i][1]);
    expect_refused(&p, name);
    free(p.b);
  }
  /* STACK_GLOBAL (protocol 4), with SHORT_BINUNICODE and MEMOIZE */
  {
    pk p = {0};
    pk_op(&p, 0x80);
    pk_op(&p, 4);
    pk_op(&p, 0x8c);
    pk_op(&p, 2);
    pk_bytes(&p, "os", 2);
    pk_op(&p, 0x94);
    pk_op(&p, 0x8c);
    pk_op(&p, 6);
    pk_bytes(&p, "system", 6);
    pk_op(&p, 0x94);
    pk_op(&p, 0x93);
    pk_str(&p, cmd);
    pk_op(&p, 0x85);
    pk_op(&p, 'R');
    pk_op(&p, '.');
    expect_refused(&p, "os.system");
    free(p.b);
  }
  /* torch.storage._load_from_bytes would unpickle again: refused */
  {
    pk p = {0};
    pk_proto(&p);
    pk_global(&p, "torch.storage", "_load_from_bytes");
    pk_op(&p, 'C');
    pk_op(&p, 1);
    pk_op(&p, 'x');
    pk_op(&p, 0x85);
    pk_op(&p, 'R');
    pk_op(&p, '.');
    expect_refused(&p, "torch.storage._load_from_bytes");
    free(p.b);
  }
  /* a global hidden inside an otherwise fine state dict */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_str(&p, "epoch");
    pk_int(&p, 1);
    pk_op(&p, 's');
    pk_str(&p, "x");
    pk_global(&p, "torch", "load");
    pk_op(&p, 's');
    pk_op(&p, '.');
    expect_refused(&p, "torch.load");
    free(p.b);
  }
  /* newlines and quotes in the name cannot break the one-line message */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, 0x8c);
    pk_op(&p, 4);
    pk_bytes(&p, "a'\nb", 4);
    pk_op(&p, 0x8c);
    pk_op(&p, 1);
    pk_bytes(&p, "c", 1);
    pk_op(&p, 0x93);
    pk_op(&p, '.');
    sdw_pt *f = NULL;
    CHECK(sdw_pt_parse_pickle(p.b, p.n, "evil.pt", &f) == SDW_ERR_FORMAT);
    CHECK(one_line_message() && message_has("'a??b.c'"));
    free(p.b);
  }
  struct stat sb;
  CHECK_MSG(stat(canary, &sb) != 0, "a refused pickle ran its command");
}

SDW_TEST(torch_pickle_opcodes_and_values) {
  pk p = {0};
  pk_proto(&p);
  pk_op(&p, '}');
  pk_op(&p, 'q');
  pk_op(&p, 0);
  pk_op(&p, '(');
  pk_str(&p, "neg");
  pk_int(&p, -7);
  pk_str(&p, "big");
  pk_long(&p, INT64_C(-9000000000000000000));
  pk_str(&p, "k1");
  pk_op(&p, 'K');
  pk_op(&p, 200);
  pk_str(&p, "k2");
  pk_op(&p, 'M');
  pk_op(&p, 0x34);
  pk_op(&p, 0x12);
  pk_str(&p, "pi");
  pk_float(&p, 3.25);
  pk_str(&p, "t");
  pk_op(&p, 0x88);
  pk_str(&p, "none");
  pk_op(&p, 'N');
  pk_str(&p, "bytes");
  pk_op(&p, 'C');
  pk_op(&p, 3);
  pk_bytes(&p, "a\0b", 3);
  pk_str(&p, "tuple3");
  pk_op(&p, 'K');
  pk_op(&p, 1);
  pk_op(&p, 'K');
  pk_op(&p, 2);
  pk_op(&p, 'K');
  pk_op(&p, 3);
  pk_op(&p, 0x87);
  pk_str(&p, "self"); /* the dict itself, through the memo: a cycle */
  pk_op(&p, 'h');
  pk_op(&p, 0);
  pk_op(&p, 'u');
  /* SETITEM replacing an existing key keeps one entry */
  pk_str(&p, "neg");
  pk_int(&p, 5);
  pk_op(&p, 's');
  /* an int-keyed dict with many keys (hash index) */
  pk_str(&p, "ints");
  pk_op(&p, '}');
  pk_op(&p, '(');
  for (int i = 0; i < 1000; i++) {
    pk_int(&p, i * 7);
    pk_int(&p, -i);
  }
  pk_op(&p, 'u');
  pk_op(&p, 's');
  /* a list with APPEND and APPENDS, and POP / POP_MARK / DUP */
  pk_str(&p, "list");
  pk_op(&p, ']');
  pk_op(&p, 'K');
  pk_op(&p, 9);
  pk_op(&p, 'a');
  pk_op(&p, '(');
  pk_op(&p, 'K');
  pk_op(&p, 8);
  pk_op(&p, '2');
  pk_op(&p, 'e');
  pk_op(&p, 'N');
  pk_op(&p, '0');
  pk_op(&p, '(');
  pk_op(&p, 'N');
  pk_op(&p, '1');
  pk_op(&p, 's');
  pk_op(&p, '.');
  sdw_pt *f = NULL;
  CHECK_OK(sdw_pt_parse_pickle(p.b, p.n, "values.pkl", &f));
  free(p.b);
  if (!f) return;
  const sdw_pt_value *r = sdw_pt_root(f);
  int64_t i = 0;
  double d = 0;
  CHECK(r->kind == SDW_PT_DICT && r->u.dict.count == 12);
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "neg"), &i) && i == 5);
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "big"), &i) && i == INT64_C(-9000000000000000000));
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "k1"), &i) && i == 200);
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "k2"), &i) && i == 0x1234);
  CHECK(sdw_pt_as_double(sdw_pt_dict_get(r, "pi"), &d) && d == 3.25);
  CHECK(sdw_pt_as_int(sdw_pt_dict_get(r, "t"), &i) && i == 1);
  CHECK(sdw_pt_dict_get(r, "none")->kind == SDW_PT_NONE);
  const sdw_pt_value *b = sdw_pt_dict_get(r, "bytes");
  CHECK(b->kind == SDW_PT_BYTES && b->u.str.len == 3 && memcmp(b->u.str.data, "a\0b", 3) == 0);
  CHECK(sdw_pt_dict_get(r, "tuple3")->u.seq.count == 3);
  CHECK(sdw_pt_dict_get(r, "self") == r);
  const sdw_pt_value *ints = sdw_pt_dict_get(r, "ints");
  REQUIRE(ints && ints->u.dict.count == 1000);
  for (int k = 0; k < 1000; k += 37)
    CHECK(sdw_pt_as_int(sdw_pt_dict_get_int(ints, k * 7), &i) && i == -k);
  CHECK(sdw_pt_dict_get_int(ints, 3) == NULL && sdw_pt_dict_get(ints, "0") == NULL);
  const sdw_pt_value *l = sdw_pt_dict_get(r, "list");
  REQUIRE(l && l->kind == SDW_PT_LIST && l->u.seq.count == 3);
  CHECK(sdw_pt_as_int(l->u.seq.items[0], &i) && i == 9);
  CHECK(l->u.seq.items[1] == l->u.seq.items[2]); /* DUP */
  char buf[64];
  CHECK(strcmp(sdw_pt_describe(l, buf, sizeof buf), "a list of 3") == 0);
  sdw_pt_close(f);
}

SDW_TEST(torch_pickle_broken_pickles) {
  /* Every prefix of a real data.pkl (the golden's, sampled) is a truncated
   * pickle: SDW_ERR_FORMAT, one line, no crash. */
  char pt_path[512];
  golden_path(pt_path, sizeof pt_path, "checkpoint.pt");
  sdw_zip *z = NULL;
  CHECK_OK(sdw_zip_open(pt_path, &z));
  REQUIRE(z);
  const sdw_zip_entry *e = sdw_zip_find(z, "checkpoint/data.pkl");
  REQUIRE(e);
  const void *pkl;
  size_t n;
  CHECK_OK(sdw_zip_read(z, e, &pkl, &n));
  for (size_t cut = 0; cut < n; cut += cut < 400 ? 1 : 997) {
    sdw_pt *f = NULL;
    sdw_status s = sdw_pt_parse_pickle(pkl, cut, "cut.pkl", &f);
    CHECK_MSG(s == SDW_ERR_FORMAT && !f && one_line_message(), "cut at %zu: %s", cut,
              sdw_status_name(s));
    sdw_pt_close(f);
  }
  /* the whole pickle parses, but its storages need the archive */
  sdw_pt *f = NULL;
  CHECK(sdw_pt_parse_pickle(pkl, n, "bare.pkl", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("outside a checkpoint archive"));
  sdw_zip_close(z);

  /* Refused constructs, each with its message. */
#define PK(lit) lit, sizeof(lit) - 1
  static const struct {
    const char *bytes;
    size_t n;
    const char *message;
  } cases[] = {
      {PK("\x80\x02(i__main__\nX\n."), "unsupported pickle opcode 'i'"},
      {PK("\x80\x02(o."), "unsupported pickle opcode 'o'"},
      {PK("\x80\x02K\x01)\x81."), "unsupported pickle opcode 0x81"},
      {PK("\x80\x06N."), "protocol 6"},
      {PK("\x80\x02r\x00\x00\x00\x00."), "stack underflow"},
      {PK("\x80\x02Nr\xff\xff\xff\x7f."), "memo index"},
      {PK("\x80\x02h\x05."), "never stored"},
      {PK("\x80\x02\x8a\x09\x01\x01\x01\x01\x01\x01\x01\x01\x01."), "wider than 64 bits"},
      {PK("\x80\x02X\xff\xff\xff\x00"
          "ab."),
       "runs past the end"},
      {PK("\x80\x02N(NNu."), "SETITEMS on a None"},
      {PK("\x80\x02}(NNNu."), "odd number"},
      {PK("\x80\x02}]Ns."), "a dict key is a list"},
      {PK("\x80\x02NK\x01K\x02s."), "SETITEM on a None"},
      {PK("\x80\x02}(N"), "ends without STOP"},
      {PK("\x80\x02"
          "e."),
       "no MARK"},
      {PK("\x80\x02N)b."), "BUILD on a None"},
      {PK("\x80\x02"
          "ccollections\nOrderedDict\nK\x01\x85R."),
       "OrderedDict is only"},
      {PK("\x80\x02"
          "ctorch\nFloatStorage\n)R."),
       "cannot be called"},
      {PK("\x80\x02N)R."), "REDUCE on a None"},
      {PK("\x80\x02"
          "ctorch._utils\n_rebuild_tensor_v2\n)R."),
       "6 or 7 arguments"},
      {PK("\x80\x02"
          "cos\nsys"),
       "GLOBAL runs past the end"},
      {PK("\x80\x02X\x02\x00\x00\x00osN\x93."), "STACK_GLOBAL needs two strings"},
      {PK("\x80\x02Q."), "stack underflow"},
      {PK("\x80\x02X\x01\x00\x00\x00xQ."), "outside a checkpoint archive"},
      {PK(""), "ends without STOP"},
  };
#undef PK
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sdw_pt *g = NULL;
    sdw_status s = sdw_pt_parse_pickle(cases[i].bytes, cases[i].n, "bad.pkl", &g);
    CHECK_MSG(s == SDW_ERR_FORMAT && !g && message_has(cases[i].message) && one_line_message(),
              "case %zu: %s: %s", i, sdw_status_name(s), sdw_last_error());
    sdw_pt_close(g);
  }
  /* Too many nested MARKs, and too many values: limits, not memory. */
  size_t big = SDW_PT_MAX_MARKS + 10;
  char *marks = malloc(big + 2);
  memset(marks, '(', big);
  marks[big] = '.';
  CHECK(sdw_pt_parse_pickle(marks, big + 1, "marks.pkl", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("nested MARKs"));
  free(marks);
  size_t nv = SDW_PT_MAX_VALUES + 10;
  char *nones = malloc(nv + 1);
  memset(nones, 'N', nv);
  nones[nv] = '.';
  CHECK(sdw_pt_parse_pickle(nones, nv + 1, "values.pkl", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("more than"));
  free(nones);
  /* Items: one list, DUP'd into itself many times, hits the item limit. */
  size_t ni = SDW_PT_MAX_ITEMS + 10;
  char *items = malloc(ni * 2 + 4);
  size_t k = 0;
  items[k++] = ']';
  for (size_t j = 0; j < ni; j++)
    items[k++] = '2', items[k++] = 'a';
  items[k++] = '.';
  CHECK(sdw_pt_parse_pickle(items, k, "items.pkl", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("container items"));
  free(items);
}

SDW_TEST(torch_pickle_broken_archives) {
  float storage[4] = {1, 2, 3, 4};
  pk p = {0};
  pk_proto(&p);
  pk_op(&p, '}');
  pk_str(&p, "t");
  pk_tensor(&p, "FloatStorage", "0", 4, 0, 1, (int64_t[]){4}, (int64_t[]){1});
  pk_op(&p, 's');
  pk_op(&p, '.');
  const void *st[1] = {storage};
  size_t sz[1] = {sizeof storage}, zn;
  unsigned char *zip = make_ckpt(&p, st, sz, 1, false, &zn);
  sdw_pt *f = NULL;
  CHECK_OK(sdw_pt_open_memory(zip, zn, "ok.pt", &f));
  sdw_pt_close(f);
  /* Every truncation, and each single-byte corruption of the first 200
   * bytes and of the directory: an error or a file that still reads within
   * bounds; never a crash. (Corruptions inside the storage bytes are caught
   * by the CRC.) */
  for (size_t cut = 0; cut < zn; cut++) {
    f = NULL;
    sdw_status s = sdw_pt_open_memory(zip, cut, "cut.pt", &f);
    CHECK_MSG(s != SDW_OK && !f && one_line_message(), "cut at %zu", cut);
  }
  unsigned char *bad = malloc(zn);
  int refused = 0;
  for (size_t at = 0; at < zn; at++) {
    for (int flip = 1; flip < 256; flip <<= 2) {
      memcpy(bad, zip, zn);
      bad[at] ^= (unsigned char)flip;
      f = NULL;
      sdw_status s = sdw_pt_open_memory(bad, zn, "flip.pt", &f);
      if (s != SDW_OK) {
        CHECK(!f && one_line_message());
        refused++;
        continue;
      }
      const sdw_pt_tensor *t = sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "t"));
      if (t && sdw_pt_tensor_nbytes(t) <= 64) {
        float got[16];
        s = sdw_pt_tensor_read(f, t, got, sdw_pt_tensor_nbytes(t));
        if (s != SDW_OK) CHECK(s == SDW_ERR_FORMAT && message_has("CRC"));
      }
      sdw_pt_close(f);
    }
  }
  CHECK(refused > 0);
  free(bad);
  /* A CRC mismatch in a storage: the archive opens, reading the tensor fails. */
  memcpy(storage, (float[]){9, 9, 9, 9}, sizeof storage);
  unsigned char *tampered = malloc(zn);
  memcpy(tampered, zip, zn);
  /* the storage entry's bytes are the 16 bytes after "archive/data/0" */
  unsigned char *hit = memmem(tampered, zn, "archive/data/0", 14);
  REQUIRE(hit);
  hit[14] ^= 0x40;
  CHECK_OK(sdw_pt_open_memory(tampered, zn, "crc.pt", &f));
  if (f) {
    float got[4];
    CHECK(sdw_pt_tensor_read(f, sdw_pt_as_tensor(sdw_pt_dict_get(sdw_pt_root(f), "t")), got, 16) ==
          SDW_ERR_FORMAT);
    CHECK(message_has("CRC-32"));
  }
  sdw_pt_close(f);
  free(tampered);
  free(zip);

  /* A storage entry that is missing. */
  zip = make_ckpt(&p, NULL, NULL, 0, false, &zn);
  CHECK(sdw_pt_open_memory(zip, zn, "nostorage.pt", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("missing from the archive"));
  free(zip);

  /* Deflated entries (torch never writes them, other zip tools may). */
  float big[256];
  for (int i = 0; i < 256; i++)
    big[i] = (float)(i % 7);
  pk q = {0};
  pk_proto(&q);
  pk_tensor(&q, "FloatStorage", "0", 256, 0, 2, (int64_t[]){16, 16}, (int64_t[]){1, 16});
  pk_op(&q, '.');
  zentry ze[3] = {{"a/data.pkl", q.b, q.n, true},
                  {"a/data/0", big, sizeof big, true},
                  {"a/byteorder", "little", 6, true}};
  zip = zip_build(ze, 3, false, &zn);
  CHECK_OK(sdw_pt_open_memory(zip, zn, "deflated.pt", &f));
  if (f) {
    const sdw_pt_tensor *t = sdw_pt_as_tensor(sdw_pt_root(f));
    float got[256];
    REQUIRE(t);
    CHECK_OK(sdw_pt_tensor_read(f, t, got, sizeof got));
    for (int i = 0; i < 16; i++)
      for (int j = 0; j < 16; j++)
        CHECK(got[i * 16 + j] == big[i + 16 * j]);
  }
  sdw_pt_close(f);
  free(zip);
  /* big-endian checkpoints are named as such */
  ze[2] = (zentry){"a/byteorder", "big", 3, false};
  zip = zip_build(ze, 3, false, &zn);
  CHECK(sdw_pt_open_memory(zip, zn, "be.pt", &f) == SDW_ERR_UNSUPPORTED);
  CHECK(message_has("big-endian"));
  free(zip);
  /* not in a folder, no data.pkl */
  zentry flat[1] = {{"data.pkl", q.b, q.n, false}};
  zip = zip_build(flat, 1, false, &zn);
  CHECK(sdw_pt_open_memory(zip, zn, "flat.pt", &f) == SDW_ERR_FORMAT);
  free(zip);
  zentry other[1] = {{"model/constants.pkl", q.b, q.n, false}};
  zip = zip_build(other, 1, false, &zn);
  CHECK(sdw_pt_open_memory(zip, zn, "ts.pt", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("without model/data.pkl"));
  free(zip);
  /* two entries of the same name */
  zentry twice[2] = {{"a/data.pkl", q.b, q.n, false}, {"a/data.pkl", q.b, q.n, false}};
  zip = zip_build(twice, 2, false, &zn);
  CHECK(sdw_pt_open_memory(zip, zn, "twice.pt", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("two entries"));
  free(zip);
  /* legacy (pre-1.6) checkpoints start with a pickle */
  CHECK(sdw_pt_open_memory("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15,
                           "legacy.pt", &f) == SDW_ERR_UNSUPPORTED);
  CHECK(message_has("legacy PyTorch checkpoint"));
  CHECK(sdw_pt_open_memory("hello", 5, "text.pt", &f) == SDW_ERR_FORMAT);
  CHECK(message_has("not a ZIP archive"));
  CHECK(sdw_pt_open("/nonexistent/x.pt", &f) == SDW_ERR_NOT_FOUND);
  free(q.b);
  free(p.b);
}

SDW_TEST(zip_reader_zip64_and_entries) {
  static const char hello[] = "hello, zip64";
  zentry e[2] = {{"x/a.txt", hello, sizeof hello - 1, false}, {"x/b.bin", hello, 5, true}};
  for (int zip64 = 0; zip64 < 2; zip64++) {
    size_t zn;
    unsigned char *zip = zip_build(e, 2, zip64, &zn);
    sdw_zip *z = NULL;
    CHECK_OK(sdw_zip_open_memory(zip, zn, "t.zip", &z));
    if (z) {
      CHECK(sdw_zip_count(z) == 2);
      const sdw_zip_entry *a = sdw_zip_find(z, "x/a.txt"), *b = sdw_zip_find(z, "x/b.bin");
      REQUIRE(a && b && !sdw_zip_find(z, "x/c"));
      CHECK(a->size == sizeof hello - 1 && a->method == 0 && b->method == 8 && b->size == 5);
      const void *d;
      size_t n;
      CHECK_OK(sdw_zip_read(z, a, &d, &n));
      CHECK(n == sizeof hello - 1 && memcmp(d, hello, n) == 0);
      CHECK_OK(sdw_zip_read(z, b, &d, &n));
      CHECK(n == 5 && memcmp(d, hello, 5) == 0);
    }
    sdw_zip_close(z);
    /* the file form maps the same bytes */
    char path[600];
    snprintf(path, sizeof path, "%s/t%d.zip", sdw_test_tmpdir(), zip64);
    CHECK_OK(sdw_atomic_write(path, zip, zn));
    z = NULL;
    CHECK_OK(sdw_zip_open(path, &z));
    CHECK(z && sdw_zip_count(z) == 2);
    sdw_zip_close(z);
    free(zip);
  }
  sdw_zip *z = NULL;
  CHECK(sdw_zip_open(sdw_test_tmpdir(), &z) == SDW_ERR_IO);
}
