/* `sdw pipeline encode`: the dataset's images -> the latent store the trainer
 * reads (core/base/latent_store.h). The seed's src/encode_latents.py
 * (SEED.md §3.7), NOT its encode_pipeline.py (§3.8), which squashed images to
 * 512x512 and skipped the VAE's quant_conv.
 *
 * For each split (train, val) the rows of DIR/dataset/<split>.parquet (the
 * build stage's file, pipeline/stage_build.c) are taken in dataset order and
 * cut into chunks of --chunk-size rows; chunk c becomes
 * DIR/latents/<split>/chunk-<c>.safetensors (DIR/<--store>/... when given)
 * holding, per sample:
 *   - the image read from its shard (columns shard, image_offset,
 *     image_size: the bytes of the tar member), decoded (pipeline/image.h),
 *     resized so its SHORTER side is --image-size preserving the aspect
 *     ratio (INTER_AREA when shrinking, INTER_CUBIC when enlarging, as
 *     encode_latents.py's cv2 calls) and center-cropped to a square with
 *     offsets (side - size) / 2 rounded down;
 *   - x / 127.5 - 1, CHW float32 (encode_latents.py's normalisation);
 *   - the VAE encoder + quant_conv, the posterior MEAN (first half of the
 *     moments), times the scaling factor of the VAE's config (0.18215 for
 *     SD 1.x), rounded to IEEE half;
 *   - input_ids, attention_mask, key and caption copied from the dataset.
 * With --vae pixels there is no VAE: the "latent" is the preprocessed image
 * itself ([3, S, S] in [-1, 1], scaling factor 1), for pixel-space models.
 *
 * Once every chunk of a split exists, index.json is written
 * (sdw_latent_store_finish): the store is complete only then.
 *
 * Resume: chunks are written atomically, so a chunk file that exists and
 * holds the keys its rows should hold is done and skipped; the temporaries
 * of a killed process (".chunk-*.tmp.<pid>" whose process is gone) are
 * removed; DIR/latents/<split>/encode-params.json records the settings
 * (encoder, image size, chunk size, dataset fingerprint) and a rerun with
 * other settings is refused rather than mixing chunks. A chunk is computed
 * the same way whoever computes it (its batches start at its first row),
 * so a killed and resumed run writes the same bytes as an uninterrupted one.
 *
 * Splitting across processes: --shard-index I --num-shards N (default from
 * OMPI_COMM_WORLD_*, PMI_* or SLURM_*): chunk c belongs to process c % N. The
 * process that finds every chunk present at its end writes index.json (each
 * may: the file is the same); --finish-only only does that step. With N > 1
 * each process reports in manifests/encode-<I>-of-<N>.json.
 *
 * A sample whose image cannot be read or decoded fails the stage with a
 * message naming its shard and key, unless --skip-bad, which leaves it out
 * of its chunk and counts it by reason in the manifest.
 *
 * Threads: images of a batch are decoded and resized in parallel (OpenMP),
 * then the batch goes through the VAE in one call (which uses every core). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/base/arena.h"
#include "core/base/fsutil.h"
#include "core/base/json.h"
#include "core/base/latent_store.h"
#include "core/base/parse.h"
#include "core/base/safetensors.h"
#include "core/base/sha256.h"
#include "core/base/tensor.h"
#include "core/model/vae.h"
#include "core/model/weights.h"
#include "kernels/ops.h"
#include "pipeline/image.h"
#include "pipeline/launcher_rank.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/stages.h"

enum { SEQ_LEN = 77, NCOL = 7 };

typedef struct enc_options {
  const char *data, *shards, *vae, *vae_config, *split, *device, *store;
  int64_t image_size, chunk_size, batch;
  int shard_index, num_shards;
  bool finish_only, skip_bad;
} enc_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdw pipeline encode --data DIR --vae PATH [options]\n"
          "\n"
          "VAE-encodes the images of DIR/dataset/{train,val}.parquet (resize the shorter side\n"
          "to --image-size, center crop, [-1, 1], posterior mean through quant_conv x the\n"
          "scaling factor, fp16) into the latent store DIR/latents/{train,val}/ (chunks of\n"
          "--chunk-size samples in dataset order, index.json last). Existing chunks are kept.\n"
          "\n"
          "  --data DIR              data directory (manifest in DIR/manifests)\n"
          "  --vae PATH              the VAE: a diffusers vae folder or pipeline, a .safetensors\n"
          "                          file (diffusers, LDM, SD single file) or a folder of\n"
          "                          config.json + weights (as `sdw run vae-encode` takes);\n"
          "                          \"pixels\": no VAE, the latent is the RGB image in [-1, 1]\n"
          "                          (3 channels, scaling factor 1)\n"
          "  --vae-config FILE       the VAE's diffusers config.json (default: beside the\n"
          "                          weights, else the SD 1.x VAE)\n"
          "  --shards DIR            where the shards are (default DIR/shards)\n"
          "  --store NAME            write the store to DIR/NAME/{train,val}/ instead of\n"
          "                          DIR/latents (a second store of the same images, e.g. the\n"
          "                          pixels a VAE trains on; NAME: up to 16 of A-Z a-z 0-9 _ -);\n"
          "                          its manifest is encode-NAME\n"
          "  --image-size N          square size the images are cropped to (default 512)\n"
          "  --chunk-size N          samples per chunk file (default 256)\n"
          "  --batch N               images per VAE call (default 4)\n"
          "  --device cpu|cuda       where the VAE runs (default cpu, every core); cuda uses\n"
          "                          the first visible GPU: one process per GPU with\n"
          "                          CUDA_VISIBLE_DEVICES and --num-shards\n"
          "  --split S               train, val or all (default all)\n"
          "  --shard-index I         this process's index (default from OMPI_COMM_WORLD_*,\n"
          "                          PMI_* or SLURM_*, else 0)\n"
          "  --num-shards N          processes sharing the work: chunk c is done by\n"
          "                          process c %% N (default from the launcher, else 1)\n"
          "  --finish-only           only write index.json when every chunk exists\n"
          "  --skip-bad              leave out samples whose image cannot be read or decoded\n"
          "                          (default: such a sample fails the stage)\n"
          "  --help                  this text\n");
}

/* 0 run, 1 --help, 2 usage error (reported). */
static int parse_options(int argc, char **argv, enc_options *o) {
  memset(o, 0, sizeof *o);
  o->image_size = 512;
  o->chunk_size = 256;
  o->batch = 4;
  o->split = "all";
  o->device = "cpu";
  o->store = "latents";
  o->shard_index = -1;
  o->num_shards = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--finish-only") == 0) {
      o->finish_only = true;
      continue;
    }
    if (strcmp(a, "--skip-bad") == 0) {
      o->skip_bad = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline encode: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    int64_t n = 0;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--vae") == 0)
      o->vae = v;
    else if (strcmp(a, "--vae-config") == 0)
      o->vae_config = v;
    else if (strcmp(a, "--shards") == 0)
      o->shards = v;
    else if (strcmp(a, "--store") == 0) {
      o->store = v;
      ok = v[0] && strlen(v) <= 16 &&
           strspn(v, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(v);
    } else if (strcmp(a, "--image-size") == 0)
      ok = sdw_parse_i64(v, 8, 8192, &o->image_size);
    else if (strcmp(a, "--chunk-size") == 0)
      ok = sdw_parse_i64(v, 1, 1 << 20, &o->chunk_size);
    else if (strcmp(a, "--batch") == 0)
      ok = sdw_parse_i64(v, 1, 1024, &o->batch);
    else if (strcmp(a, "--device") == 0) {
      o->device = v;
      ok = strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0;
    } else if (strcmp(a, "--split") == 0) {
      o->split = v;
      ok = strcmp(v, "train") == 0 || strcmp(v, "val") == 0 || strcmp(v, "all") == 0;
    } else if (strcmp(a, "--shard-index") == 0) {
      ok = sdw_parse_i64(v, 0, INT_MAX - 1, &n);
      o->shard_index = (int)n;
    } else if (strcmp(a, "--num-shards") == 0) {
      ok = sdw_parse_i64(v, 1, INT_MAX, &n);
      o->num_shards = (int)n;
    } else {
      fprintf(stderr, "sdw: pipeline encode: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline encode: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data || !o->vae) {
    fprintf(stderr, "sdw: pipeline encode: --data and --vae are required (see --help)\n");
    return 2;
  }
  if (o->shard_index < 0 || o->num_shards < 0) {
    int r, n;
    if (sdw_launcher_rank(&r, &n)) {
      if (o->shard_index < 0) o->shard_index = r;
      if (o->num_shards < 0) o->num_shards = n;
    }
  }
  if (o->shard_index < 0) o->shard_index = 0;
  if (o->num_shards < 0) o->num_shards = 1;
  if (o->shard_index >= o->num_shards) {
    fprintf(stderr, "sdw: pipeline encode: --shard-index %d is not below --num-shards %d\n",
            o->shard_index, o->num_shards);
    return 2;
  }
  return 0;
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* --- the encoder: a VAE, or the identity of pixel mode ------------------------------ */

typedef struct encoder {
  bool pixels;
  int size;        /* image side S */
  int batch;       /* images per call at most */
  int C, h, w;     /* one latent */
  double scaling;  /* scaling factor */
  char desc[1200]; /* what encoded the store (index.json "vae") */
  sdw_ctx *ctx;
  sdw_weights *weights;
  sdw_vae vae;
  bool vae_ready;
  sdw_arena *arena;
  void *dev_in, *dev_out;
  float *host_out; /* [batch, 2C, h, w] moments */
} encoder;

static void encoder_free(encoder *e) {
  if (e->ctx) {
    if (e->dev_in) e->ctx->ops->free(e->ctx, e->dev_in);
    if (e->dev_out) e->ctx->ops->free(e->ctx, e->dev_out);
  }
  if (e->vae_ready) sdw_vae_free(&e->vae);
  sdw_arena_destroy(e->arena);
  sdw_weights_close(e->weights);
  sdw_ctx_destroy(e->ctx);
  free(e->host_out);
  memset(e, 0, sizeof *e);
}

static sdw_status encoder_open(encoder *e, const enc_options *o) {
  memset(e, 0, sizeof *e);
  e->size = (int)o->image_size;
  e->batch = (int)o->batch;
  if (strcmp(o->vae, "pixels") == 0) {
    e->pixels = true;
    e->C = 3;
    e->h = e->w = e->size;
    e->scaling = 1.0;
    snprintf(e->desc, sizeof e->desc, "pixels");
    return SDW_OK;
  }
  SDW_TRY(sdw_weights_open(o->vae, "vae", &e->weights));
  sdw_vae_config cfg;
  const char *cfg_path = o->vae_config ? o->vae_config : sdw_weights_config_path(e->weights);
  SDW_TRY(cfg_path ? sdw_vae_config_from_json(cfg_path, &cfg)
                   : sdw_vae_preset("sd-vae-ft-mse", &cfg));
  const int f = sdw_vae_downscale(&cfg);
  if (cfg.in_channels != 3)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: the VAE takes %d image channels, not 3", o->vae,
                    cfg.in_channels);
  if (e->size % f)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "--image-size %d is not a multiple of the VAE's downscale factor %d", e->size,
                    f);
  const sdw_backend *be = strcmp(o->device, "cuda") == 0 ? sdw_backend_cuda() : sdw_backend_cpu();
  if (!be)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "--device cuda: this build of sdw has no CUDA backend (see sdw info)");
  SDW_TRY(sdw_ctx_create(be, 0, &e->ctx));
  SDW_TRY(sdw_vae_create(&e->vae, e->ctx, &cfg, SDW_VAE_ENCODER));
  e->vae_ready = true;
  SDW_TRY(sdw_vae_load(&e->vae, e->weights, NULL));
  e->C = cfg.latent_channels;
  e->h = e->w = e->size / f;
  e->scaling = cfg.scaling_factor;
  const size_t in_bytes = (size_t)e->batch * 3 * (size_t)e->size * (size_t)e->size * sizeof(float);
  const size_t out_n = (size_t)e->batch * 2 * (size_t)e->C * (size_t)e->h * (size_t)e->w;
  size_t need = sdw_vae_encode_arena_bytes(&e->vae, e->batch, e->size, e->size) + (1 << 20);
  SDW_TRY(sdw_arena_create(&e->arena, "vae activations", need));
  SDW_TRY(e->ctx->ops->alloc(e->ctx, in_bytes, &e->dev_in));
  SDW_TRY(e->ctx->ops->alloc(e->ctx, out_n * sizeof(float), &e->dev_out));
  if (!(e->host_out = malloc(out_n * sizeof(float))))
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the VAE outputs");
  char real[PATH_MAX];
  const char *name = realpath(o->vae, real) ? real : o->vae;
  snprintf(e->desc, sizeof e->desc,
           "%.1000s (AutoencoderKL encoder + quant_conv, posterior mean x %.9g, f32, sdw)", name,
           e->scaling);
  return SDW_OK;
}

/* pixels[n, 3, S, S] (host, [-1, 1]) -> out[n, C, h, w] IEEE half, scaled. */
static sdw_status encoder_run(encoder *e, const float *pixels, int n, uint16_t *out) {
  const size_t per = (size_t)e->C * (size_t)e->h * (size_t)e->w;
  if (e->pixels) {
    for (size_t i = 0; i < (size_t)n * per; i++)
      out[i] = sdw_f32_to_f16(pixels[i]);
    return SDW_OK;
  }
  const sdw_backend *ops = e->ctx->ops;
  const size_t in_bytes = (size_t)n * 3 * (size_t)e->size * (size_t)e->size * sizeof(float);
  SDW_TRY(ops->upload(e->ctx, e->dev_in, pixels, in_bytes));
  sdw_tensor x = sdw_tensor_4d(e->dev_in, SDW_F32, n, 3, e->size, e->size);
  sdw_tensor m = sdw_tensor_4d(e->dev_out, SDW_F32, n, 2 * e->C, e->h, e->w);
  x.device = m.device = (sdw_device){ops->device, 0};
  SDW_TRY(sdw_vae_encode_moments(&e->vae, e->arena, &x, &m));
  SDW_TRY(ops->download(e->ctx, e->host_out, e->dev_out, (size_t)n * 2 * per * sizeof(float)));
  /* the mean is the first C channels of each sample's moments; the scaling
   * is one f32 multiply, as latent_dist.mean * 0.18215 in torch */
  const float s = (float)e->scaling;
  for (int i = 0; i < n; i++)
    for (size_t k = 0; k < per; k++)
      out[(size_t)i * per + k] = sdw_f32_to_f16(e->host_out[(size_t)i * 2 * per + k] * s);
  return SDW_OK;
}

/* --- the dataset -------------------------------------------------------------------- */

static const char *const k_cols[NCOL] = {"image_key", "caption",      "input_ids", "attention_mask",
                                         "shard",     "image_offset", "image_size"};

typedef struct dataset {
  sdw_parquet_array col[NCOL];
  int64_t rows;
  char sha256[65];
} dataset;

static void dataset_free(dataset *d) {
  for (int c = 0; c < NCOL; c++)
    sdw_parquet_array_free(&d->col[c]);
}

static sdw_status dataset_load(const char *path, dataset *d) {
  memset(d, 0, sizeof *d);
  sdw_parquet_file *f;
  sdw_status st = sdw_parquet_open(path, NULL, &f);
  if (st == SDW_ERR_NOT_FOUND) {
    char why[512];
    snprintf(why, sizeof why, "%s", sdw_last_error());
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s (run `sdw pipeline build` first)", why);
  }
  SDW_TRY(st);
  st = sdw_parquet_read_columns(f, -1, k_cols, NCOL, d->col);
  d->rows = sdw_parquet_num_rows(f);
  for (int c = 0; c < NCOL && st == SDW_OK; c++) {
    sdw_parquet_type want = c >= 5 ? SDW_PARQUET_INT64 : SDW_PARQUET_BYTE_ARRAY;
    if (d->col[c].type != want || d->col[c].length != d->rows || d->col[c].null_count)
      st = sdw_fail(SDW_ERR_FORMAT, "%s: column %s is not the dataset's (see sdw pipeline build)",
                    path, k_cols[c]);
  }
  for (int64_t i = 0; i < d->rows && st == SDW_OK; i++) {
    size_t a, b;
    sdw_parquet_array_bytes(&d->col[2], i, &a);
    sdw_parquet_array_bytes(&d->col[3], i, &b);
    if (a != 4 * SEQ_LEN || b != 4 * SEQ_LEN)
      st = sdw_fail(SDW_ERR_FORMAT, "%s: row %lld: input_ids/attention_mask are not 77 int32", path,
                    (long long)i);
  }
  sdw_parquet_close(f);
  unsigned char dg[32];
  if (st == SDW_OK) st = sdw_sha256_file(path, dg);
  if (st == SDW_OK) sdw_sha256_hex(dg, d->sha256);
  if (st != SDW_OK) dataset_free(d);
  return st;
}

/* A byte-array value as a malloc'd NUL-terminated UTF-8 string: the store
 * holds UTF-8 only, so a byte that does not start a well-formed sequence (or
 * is NUL) becomes U+FFFD, as Python's decode(errors="replace") does. */
static char *dup_cell(const dataset *d, int col, int64_t row) {
  size_t n;
  const uint8_t *b = sdw_parquet_array_bytes(&d->col[col], row, &n);
  char *s = malloc(3 * n + 1);
  if (!s) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    const uint8_t c = b[i];
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (c != 0 && len && i + len <= n && sdw_utf8_valid(b + i, len)) {
      memcpy(s + o, b + i, len);
      o += len;
      i += len;
    } else {
      memcpy(s + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    }
  }
  s[o] = 0;
  return s;
}

/* Is value (col, row), as dup_cell stores it, the n bytes at p? */
static bool cell_equals(const dataset *d, int col, int64_t row, const char *p, size_t n) {
  char *s = dup_cell(d, col, row);
  bool eq = s && strlen(s) == n && (n == 0 || memcmp(s, p, n) == 0);
  free(s);
  return eq;
}

/* --- one sample's pixels ---------------------------------------------------------- */

/* Reads, decodes and crops row's image into px[3, S, S]; NULL on success,
 * else the failure reason (detail in why). */
static const char *load_pixels(const char *shard_dir, const dataset *d, int64_t row, int size,
                               float *px, char *why, size_t why_size) {
  size_t sn;
  const uint8_t *sb = sdw_parquet_array_bytes(&d->col[4], row, &sn);
  const int64_t off = ((const int64_t *)d->col[5].values)[row];
  const int64_t len = ((const int64_t *)d->col[6].values)[row];
  char shard[512];
  if (sn == 0 || sn >= sizeof shard || memchr(sb, '/', sn) || memchr(sb, 0, sn) || sb[0] == '.') {
    snprintf(why, why_size, "the shard name is not a plain file name");
    return "bad_row";
  }
  memcpy(shard, sb, sn);
  shard[sn] = 0;
  if (off < 0 || len <= 0 || len > ((int64_t)1 << 31)) {
    snprintf(why, why_size, "image_offset/image_size out of range");
    return "bad_row";
  }
  char path[8192];
  snprintf(path, sizeof path, "%s/%s", shard_dir, shard);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(why, why_size, "%.300s: %s", path, strerror(errno));
    return "shard_missing";
  }
  uint8_t *buf = malloc((size_t)len);
  if (!buf) {
    close(fd);
    snprintf(why, why_size, "out of memory");
    return "out_of_memory";
  }
  size_t got = 0;
  while (got < (size_t)len) {
    ssize_t r = pread(fd, buf + got, (size_t)len - got, (off_t)(off + (int64_t)got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != (size_t)len) {
    free(buf);
    snprintf(why, why_size, "%.300s: the image's bytes end early (the shard changed?)", path);
    return "read_error";
  }
  sdw_image img = {0}, r = {0};
  sdw_status st = sdw_image_decode(buf, (size_t)len, NULL, &img, NULL);
  free(buf);
  if (st != SDW_OK) {
    snprintf(why, why_size, "%s", sdw_last_error());
    return "decode_error";
  }
  /* shorter side -> size (area down, cubic up), center crop: encode_latents.py */
  sdw_resize_options ro = {
      .mode = SDW_RESIZE_CENTER_CROP, .size = size, .resize_only_if_bigger = 0, .upscale_cubic = 1};
  st = sdw_image_resize(&img, &ro, &r);
  sdw_image_free(&img);
  if (st != SDW_OK || r.width != size || r.height != size) {
    sdw_image_free(&r);
    snprintf(why, why_size, "resize failed: %s", sdw_last_error());
    return "resize_error";
  }
  const size_t plane = (size_t)size * (size_t)size;
  for (size_t p = 0; p < plane; p++)
    for (int c = 0; c < 3; c++)
      px[(size_t)c * plane + p] = (float)r.pixels[3 * p + (size_t)c] / 127.5f - 1.0f;
  sdw_image_free(&r);
  return NULL;
}

/* obj[key] = v, replacing or adding. */
static void set_number(cJSON *obj, const char *key, double v) {
  if (cJSON_GetObjectItemCaseSensitive(obj, key))
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateNumber(v));
  else
    cJSON_AddNumberToObject(obj, key, v);
}

/* extra.eta_s and extra.images_per_s from the counts so far. */
static void update_rate(sdw_manifest *m) {
  const double el = sdw_manifest_now() - m->started_at;
  const int64_t in = atomic_load(&m->in), out = atomic_load(&m->out);
  const int64_t left = m->total - in - atomic_load(&m->skipped);
  const double rate = el > 0 ? (double)in / el : 0;
  set_number(m->extra, "images_per_s", el > 0 ? out / el : 0);
  set_number(m->extra, "eta_s", rate > 0 && left > 0 ? left / rate : 0);
}

/* --- chunks ------------------------------------------------------------------------- */

typedef struct split_run {
  const enc_options *o;
  sdw_manifest *m;
  encoder *enc;
  const dataset *d;
  const char *split;
  char dir[4096];       /* DIR/latents/<split> */
  char shard_dir[4096]; /* where the shards are */
  int64_t num_chunks;
} split_run;

static void chunk_path(const split_run *r, int64_t c, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/chunk-%05lld.safetensors", r->dir, (long long)c);
}

/* True when the chunk file exists, is a latent chunk of this store's shape
 * and holds keys of its rows in order (all of them unless --skip-bad). */
static bool chunk_done(const split_run *r, int64_t c) {
  char path[8192];
  chunk_path(r, c, path, sizeof path);
  struct stat sb;
  if (stat(path, &sb) != 0) return false;
  sdw_safetensors *st;
  if (sdw_safetensors_open(path, &st) != SDW_OK) return false;
  bool ok = false;
  const char *fmt = sdw_safetensors_metadata_get(st, "format");
  const sdw_safetensors_entry *lat = sdw_safetensors_find(st, "latents");
  const sdw_safetensors_entry *kb = sdw_safetensors_find(st, "keys.bytes");
  const sdw_safetensors_entry *ko = sdw_safetensors_find(st, "keys.offsets");
  const int64_t first = c * r->o->chunk_size;
  const int64_t rows =
      first + r->o->chunk_size <= r->d->rows ? r->o->chunk_size : r->d->rows - first;
  if (fmt && strcmp(fmt, "sdw-latent-chunk/1") == 0 && lat && kb && ko && lat->dtype == SDW_F16 &&
      lat->ndim == 4 && lat->shape[1] == r->enc->C && lat->shape[2] == r->enc->h &&
      lat->shape[3] == r->enc->w && ko->dtype == SDW_I64 && ko->ndim == 1 &&
      ko->shape[0] == lat->shape[0] + 1 && lat->shape[0] >= 1 && lat->shape[0] <= rows &&
      (r->o->skip_bad || lat->shape[0] == rows)) {
    const int64_t n = lat->shape[0];
    int64_t *off = malloc((size_t)(n + 1) * sizeof *off);
    if (off) {
      memcpy(off, ko->data, (size_t)(n + 1) * sizeof *off); /* the mapping may be unaligned */
      const char *keys = kb->data;
      ok = off[0] == 0 && off[n] == (int64_t)kb->nbytes;
      int64_t row = first;
      for (int64_t i = 0; i < n && ok; i++) {
        if (off[i + 1] < off[i]) {
          ok = false;
          break;
        }
        /* keys of the chunk: a subsequence of the rows' keys, in order */
        while (row < first + rows &&
               !cell_equals(r->d, 0, row, keys + off[i], (size_t)(off[i + 1] - off[i])))
          row++;
        if (row == first + rows) ok = false;
        row++;
      }
      free(off);
    }
  }
  sdw_safetensors_close(st);
  return ok;
}

/* Encodes chunk c and writes it. Returns SDW_OK, or an error that stops the
 * stage; *interrupted when a signal came (nothing written). */
static sdw_status encode_chunk(split_run *r, int64_t c, bool *interrupted) {
  const enc_options *o = r->o;
  encoder *e = r->enc;
  const dataset *d = r->d;
  const int64_t first = c * o->chunk_size;
  const int64_t rows = first + o->chunk_size <= d->rows ? o->chunk_size : d->rows - first;
  const size_t per_px = 3 * (size_t)e->size * (size_t)e->size;
  const size_t per_lat = (size_t)e->C * (size_t)e->h * (size_t)e->w;
  const int B = e->batch;
  *interrupted = false;

  float *px = malloc((size_t)B * per_px * sizeof(float));
  uint16_t *lat = malloc((size_t)rows * per_lat * sizeof(uint16_t));
  int32_t *ids = malloc((size_t)rows * SEQ_LEN * sizeof(int32_t));
  int32_t *mask = malloc((size_t)rows * SEQ_LEN * sizeof(int32_t));
  char **keys = calloc((size_t)rows, sizeof *keys);
  char **caps = calloc((size_t)rows, sizeof *caps);
  const char *reasons[1024];
  char(*whys)[512] = malloc((size_t)B * sizeof *whys);
  int64_t *slot_row = malloc((size_t)B * sizeof *slot_row);
  sdw_status st = SDW_OK;
  if (!px || !lat || !ids || !mask || !keys || !caps || !whys || !slot_row || B > 1024)
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for a chunk of %lld samples",
                  (long long)rows);
  int64_t kept = 0;
  for (int64_t b0 = first; b0 < first + rows && st == SDW_OK; b0 += B) {
    if (g_stop) {
      *interrupted = true;
      break;
    }
    const int n = (int)(first + rows - b0 < B ? first + rows - b0 : B);
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++)
      reasons[i] = load_pixels(r->shard_dir, d, b0 + i, e->size, px + (size_t)i * per_px, whys[i],
                               sizeof whys[i]);
    /* compact the good ones to the front of the batch */
    int good = 0;
    for (int i = 0; i < n && st == SDW_OK; i++) {
      sdw_manifest_count_in(r->m, 1);
      if (reasons[i]) {
        size_t kn;
        const uint8_t *kb = sdw_parquet_array_bytes(&d->col[0], b0 + i, &kn);
        if (!o->skip_bad) {
          size_t sn;
          const uint8_t *sb = sdw_parquet_array_bytes(&d->col[4], b0 + i, &sn);
          sdw_manifest_count_failed(r->m, reasons[i]);
          st = sdw_fail(SDW_ERR_FORMAT,
                        "%s split, row %lld, shard %.*s, key %.*s: %s: %s (--skip-bad leaves "
                        "such samples out)",
                        r->split, (long long)(b0 + i), (int)sn, (const char *)sb, (int)kn,
                        (const char *)kb, reasons[i], whys[i]);
          break;
        }
        sdw_manifest_count_failed(r->m, reasons[i]);
        continue;
      }
      if (good != i)
        memcpy(px + (size_t)good * per_px, px + (size_t)i * per_px, per_px * sizeof(float));
      slot_row[good++] = b0 + i;
    }
    if (st != SDW_OK || good == 0) continue;
    st = encoder_run(e, px, good, lat + (size_t)kept * per_lat);
    for (int i = 0; i < good && st == SDW_OK; i++) {
      const int64_t row = slot_row[i];
      size_t l;
      memcpy(ids + (size_t)kept * SEQ_LEN, sdw_parquet_array_bytes(&d->col[2], row, &l),
             4 * SEQ_LEN);
      memcpy(mask + (size_t)kept * SEQ_LEN, sdw_parquet_array_bytes(&d->col[3], row, &l),
             4 * SEQ_LEN);
      keys[kept] = dup_cell(d, 0, row);
      caps[kept] = dup_cell(d, 1, row);
      if (!keys[kept] || !caps[kept]) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      kept++;
    }
    if (st == SDW_OK) sdw_manifest_count_out(r->m, good);
    update_rate(r->m);
    sdw_manifest_flush(r->m, false);
  }
  if (st == SDW_OK && !*interrupted && kept == 0)
    st = sdw_fail(SDW_ERR_FORMAT, "%s split, chunk %lld: no sample could be encoded", r->split,
                  (long long)c);
  if (st == SDW_OK && !*interrupted) {
    sdw_latent_chunk ch = {.count = kept,
                           .channels = e->C,
                           .height = e->h,
                           .width = e->w,
                           .seq_len = SEQ_LEN,
                           .latents = lat,
                           .input_ids = ids,
                           .attention_mask = mask,
                           .keys = (const char *const *)keys,
                           .captions = (const char *const *)caps};
    char path[8192];
    chunk_path(r, c, path, sizeof path);
    st = sdw_latent_chunk_write(path, &ch);
  }
  for (int64_t i = 0; keys && caps && i < rows; i++) {
    free(keys[i]);
    free(caps[i]);
  }
  free(keys);
  free(caps);
  free(px);
  free(lat);
  free(ids);
  free(mask);
  free(whys);
  free(slot_row);
  return st;
}

/* Removes ".chunk-*.tmp.<pid>" files whose process is gone (a killed run's). */
static void remove_stale_temporaries(const char *dir) {
  DIR *dd = opendir(dir);
  if (!dd) return;
  struct dirent *ent;
  while ((ent = readdir(dd))) {
    const char *t = strstr(ent->d_name, ".tmp.");
    if (strncmp(ent->d_name, ".chunk-", 7) != 0 || !t) continue;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    if (*end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
      char p[8192];
      snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
      unlink(p);
    }
  }
  closedir(dd);
}

/* Writes or checks DIR/latents/<split>/encode-params.json: a rerun with other
 * settings must not reuse chunks. */
static sdw_status check_params(const split_run *r) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "format", "sdw-encode-params/1");
  cJSON_AddStringToObject(p, "vae", r->enc->desc);
  cJSON_AddNumberToObject(p, "image_size", r->enc->size);
  cJSON_AddNumberToObject(p, "chunk_size", (double)r->o->chunk_size);
  cJSON_AddNumberToObject(p, "rows", (double)r->d->rows);
  cJSON_AddStringToObject(p, "dataset_sha256", r->d->sha256);
  cJSON_AddBoolToObject(p, "skip_bad", r->o->skip_bad);
  char *text = cJSON_Print(p);
  cJSON_Delete(p);
  if (!text) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  char path[8192];
  snprintf(path, sizeof path, "%s/encode-params.json", r->dir);
  void *old = NULL;
  size_t old_n = 0;
  sdw_status st = sdw_read_file(path, &old, &old_n);
  if (st == SDW_OK) {
    if (old_n != strlen(text) || memcmp(old, text, old_n) != 0)
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "%s was encoded with other settings or from another dataset (see %s); "
                    "remove that directory to encode it again",
                    r->dir, path);
  } else if (st == SDW_ERR_NOT_FOUND) {
    st = sdw_atomic_write(path, text, strlen(text));
  }
  free(old);
  free(text);
  return st;
}

/* Writes index.json when every chunk exists; *complete tells whether it did. */
static sdw_status finish_split(const split_run *r, bool *complete) {
  *complete = false;
  for (int64_t c = 0; c < r->num_chunks; c++) {
    char path[8192];
    chunk_path(r, c, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) != 0) return SDW_OK;
  }
  SDW_TRY(sdw_latent_store_finish(r->dir, r->split, (int)r->num_chunks, r->enc->scaling,
                                  r->enc->size, r->enc->desc));
  *complete = true;
  return SDW_OK;
}

static sdw_status run_split(const enc_options *o, sdw_manifest *m, encoder *enc, const char *split,
                            bool *interrupted, cJSON *report) {
  split_run r = {.o = o, .m = m, .enc = enc, .split = split};
  snprintf(r.dir, sizeof r.dir, "%s/%s/%s", o->data, o->store, split);
  if (o->shards)
    snprintf(r.shard_dir, sizeof r.shard_dir, "%s", o->shards);
  else
    snprintf(r.shard_dir, sizeof r.shard_dir, "%s/shards", o->data);
  char dpath[8192];
  snprintf(dpath, sizeof dpath, "%s/dataset/%s.parquet", o->data, split);
  dataset d;
  SDW_TRY(dataset_load(dpath, &d));
  sdw_manifest_add_input(m, dpath, false);
  r.d = &d;
  r.num_chunks = (d.rows + o->chunk_size - 1) / o->chunk_size;
  cJSON *rep = cJSON_CreateObject();
  cJSON_AddItemToObject(report, split, rep);
  cJSON_AddNumberToObject(rep, "rows", (double)d.rows);
  cJSON_AddNumberToObject(rep, "chunks", (double)r.num_chunks);
  if (d.rows == 0) {
    /* nothing to encode: no store (a reader finds none) */
    cJSON_AddStringToObject(rep, "state", "empty");
    dataset_free(&d);
    return SDW_OK;
  }
  sdw_status st = sdw_mkdir_p(r.dir);
  if (st == SDW_OK) st = check_params(&r);
  if (st == SDW_OK) remove_stale_temporaries(r.dir);
  int64_t done = 0, skipped = 0, mine = 0;
  char index[8192];
  snprintf(index, sizeof index, "%s/index.json", r.dir);
  bool removed_index = false;
  for (int64_t c = 0; c < r.num_chunks && st == SDW_OK && !o->finish_only; c++) {
    if (c % o->num_shards != o->shard_index) continue;
    mine++;
    const int64_t first = c * o->chunk_size;
    const int64_t rows = first + o->chunk_size <= d.rows ? o->chunk_size : d.rows - first;
    if (chunk_done(&r, c)) {
      skipped++;
      sdw_manifest_count_skipped(m, rows);
      continue;
    }
    if (!removed_index) {
      /* the store is about to change: an index from before must go */
      unlink(index);
      removed_index = true;
    }
    bool intr = false;
    st = encode_chunk(&r, c, &intr);
    if (intr) {
      *interrupted = true;
      break;
    }
    if (st == SDW_OK) {
      done++;
      char path[8192];
      chunk_path(&r, c, path, sizeof path);
      sdw_manifest_add_output(m, path);
      set_number(rep, "chunks_done", (double)(done + skipped));
      sdw_manifest_flush(m, false);
    }
  }
  set_number(rep, "chunks_mine", (double)mine);
  set_number(rep, "chunks_done", (double)(done + skipped));
  set_number(rep, "chunks_skipped", (double)skipped);
  bool complete = false;
  if (st == SDW_OK && !*interrupted) st = finish_split(&r, &complete);
  if (st == SDW_OK) {
    cJSON_AddStringToObject(rep, "state", complete ? "complete" : "waiting for other processes");
    if (complete) sdw_manifest_add_output(m, index);
    if (o->finish_only && !complete)
      st = sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: not every chunk exists yet (%lld expected); run the encode processes "
                    "first",
                    r.dir, (long long)r.num_chunks);
  }
  dataset_free(&d);
  return st;
}

/* Samples this process will handle (for progress and ETA). */
static int64_t count_total(const enc_options *o, const char *const *splits, int ns) {
  int64_t total = 0;
  for (int s = 0; s < ns; s++) {
    char p[8192];
    snprintf(p, sizeof p, "%s/dataset/%s.parquet", o->data, splits[s]);
    sdw_parquet_file *f;
    if (sdw_parquet_open(p, NULL, &f) != SDW_OK) continue;
    int64_t rows = sdw_parquet_num_rows(f);
    sdw_parquet_close(f);
    int64_t nc = (rows + o->chunk_size - 1) / o->chunk_size;
    for (int64_t c = o->shard_index; c < nc; c += o->num_shards) {
      int64_t first = c * o->chunk_size;
      total += first + o->chunk_size <= rows ? o->chunk_size : rows - first;
    }
  }
  return total;
}

int sdw_pipeline_encode_main(int argc, char **argv) {
  enc_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  const char *splits[2] = {"train", "val"};
  int ns = 2;
  if (strcmp(o.split, "all") != 0) {
    splits[0] = o.split;
    ns = 1;
  }
  char stage[64], named[32] = "encode";
  if (strcmp(o.store, "latents") != 0) snprintf(named, sizeof named, "encode-%s", o.store);
  if (o.num_shards > 1)
    snprintf(stage, sizeof stage, "%s-%d-of-%d", named, o.shard_index, o.num_shards);
  else
    snprintf(stage, sizeof stage, "%s", named);
  sdw_manifest m;
  sdw_status st = sdw_manifest_begin(&m, o.data, stage);
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline encode: %s\n", sdw_last_error());
    return 1;
  }
  encoder enc;
  st = encoder_open(&enc, &o);
  sdw_manifest_set_total(&m, o.finish_only ? 0 : count_total(&o, splits, ns));
  cJSON_AddStringToObject(m.extra, "vae", enc.desc);
  cJSON_AddNumberToObject(m.extra, "image_size", (double)o.image_size);
  cJSON_AddNumberToObject(m.extra, "chunk_size", (double)o.chunk_size);
  cJSON_AddNumberToObject(m.extra, "shard_index", o.shard_index);
  cJSON_AddNumberToObject(m.extra, "num_shards", o.num_shards);
  cJSON_AddNumberToObject(m.extra, "images_per_s", 0);
  cJSON_AddNumberToObject(m.extra, "eta_s", 0);
  cJSON *report = cJSON_CreateObject();
  cJSON_AddItemToObject(m.extra, "splits", report);
  sdw_manifest_flush(&m, true);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND; /* a second signal ends the process at once */
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  bool interrupted = false;
  for (int s = 0; s < ns && st == SDW_OK && !interrupted; s++)
    st = run_split(&o, &m, &enc, splits[s], &interrupted, report);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);

  int rc = 0;
  const char *state = "done";
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", sdw_last_error());
  if (st != SDW_OK) {
    sdw_manifest_set_message(&m, "%s", msg);
    fprintf(stderr, "sdw: pipeline encode: %s\n", msg);
    state = "failed";
    rc = 1;
  } else if (interrupted) {
    sdw_manifest_set_message(&m, "interrupted");
    state = "interrupted";
    rc = 130;
  }
  update_rate(&m);
  sdw_manifest_finish(&m, state);
  encoder_free(&enc);
  return rc;
}
