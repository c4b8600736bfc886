/* `sdw eval MODEL --data DIR`: prompt -> image retrieval accuracy of a
 * model trained on small images (the demo's measure of "do prompts work").
 *
 * For N captions of a pixel-space store of the training images (DIR/
 * latents/train of a pixel-space run; for a model on VAE latents --store
 * names the pixel store of the same images, DIR/pixels/train in the demo:
 * samples are decoded through the run's VAE), drawn without repetition
 * by a seeded shuffle, the model samples one image per caption; the image
 * is compared with every training image in a fixed feature space (the RGB
 * image average-pooled to 16x16, values in [-1, 1], L2 distance) and the
 * training images are ranked by distance. A caption counts as a top-k hit
 * when one of the k nearest training images carries that very caption.
 * The same is measured for the untrained model (the same architecture with
 * the trainer's random initialisation) and given next to chance (k over the
 * number of training images, what a sampler ignoring the prompt reaches on
 * average). Next to the ranks, how close each sample comes to its own
 * caption's image: the PSNR of the features against the nearest training
 * image with that caption (peak-to-peak 2), averaged over the captions: it
 * still separates models when both retrieve every caption. Output: a text
 * table, and JSON (--json FILE). */
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/latent_store.h"
#include "core/base/log.h"
#include "core/base/parse.h"
#include "core/base/rng.h"
#include "core/base/tensor.h"
#include "core/cli/cli.h"
#include "core/cli/demo_model.h"

enum { FEAT_SIDE = 16 };

typedef struct eval_options {
  const char *model, *data, *store, *json, *text_encoder, *images;
  int64_t count, steps, k, batch;
  uint64_t seed;
  double cfg;
  int ema;
  bool baseline;
} eval_options;

static void usage(FILE *f) {
  fprintf(f, "usage: sdw eval MODEL --data DIR [options]\n"
             "\n"
             "Prompt-to-image retrieval accuracy of a model trained on small images (the\n"
             "demo's): for N training captions, samples an image, ranks the training images by\n"
             "distance in a fixed feature space (16x16 average-pooled RGB, L2) and counts the\n"
             "captions whose own image is the nearest (top-1) or among the k nearest (top-k),\n"
             "with the mean PSNR of each sample to its own image; the same for the untrained\n"
             "model (same architecture, random init) and for chance (k / images).\n"
             "\n"
             "  MODEL               a run directory (its latest checkpoint) or a checkpoint file\n"
             "  --data DIR          data directory whose latents/train store is the training set\n"
             "                      (a pixel-space run's)\n"
             "  --store DIR         a pixel-space store of the training images (instead of\n"
             "                      --data; for a model on VAE latents, the store the VAE\n"
             "                      trained on: sdw pipeline encode --vae pixels --store NAME)\n"
             "  --count N           captions to test (default 50)\n"
             "  --k K               the top-k of the report (default 5)\n"
             "  --steps S           DDIM steps per image (default 25)\n"
             "  --cfg X             classifier-free guidance scale (default: the run's\n"
             "                      sample_cfg)\n"
             "  --seed S            caption shuffle and sampling seed (default 42)\n"
             "  --batch B           images per sampling call (default 16)\n"
             "  --text-encoder DIR  the frozen text encoder (default: the run's)\n"
             "  --ema, --no-ema     EMA weights (default when present) or the raw ones\n"
             "  --no-baseline       skip the untrained model\n"
             "  --json FILE         also write the report as JSON\n"
             "  --images DIR        write every sampled image and its nearest training image\n"
             "  --help              this text\n");
}

static int parse_options(int argc, char **argv, eval_options *o) {
  memset(o, 0, sizeof *o);
  o->count = 50;
  o->k = 5;
  o->steps = 25;
  o->cfg = -1; /* the run's sample_cfg */
  o->seed = 42;
  o->batch = 16;
  o->ema = -1;
  o->baseline = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--ema") == 0 || strcmp(a, "--no-ema") == 0) {
      o->ema = strcmp(a, "--ema") == 0;
      continue;
    }
    if (strcmp(a, "--no-baseline") == 0) {
      o->baseline = false;
      continue;
    }
    if (a[0] != '-') {
      if (o->model) {
        fprintf(stderr, "sdw: eval: one MODEL only ('%s' and '%s')\n", o->model, a);
        return 2;
      }
      o->model = a;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: eval: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    int64_t seed = 0;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--store") == 0)
      o->store = v;
    else if (strcmp(a, "--json") == 0)
      o->json = v;
    else if (strcmp(a, "--images") == 0)
      o->images = v;
    else if (strcmp(a, "--text-encoder") == 0)
      o->text_encoder = v;
    else if (strcmp(a, "--count") == 0)
      ok = sdw_parse_i64(v, 1, 1000000, &o->count);
    else if (strcmp(a, "--k") == 0)
      ok = sdw_parse_i64(v, 1, 1000000, &o->k);
    else if (strcmp(a, "--steps") == 0)
      ok = sdw_parse_i64(v, 1, 1000, &o->steps);
    else if (strcmp(a, "--batch") == 0)
      ok = sdw_parse_i64(v, 1, 1024, &o->batch);
    else if (strcmp(a, "--cfg") == 0)
      ok = sdw_parse_double(v, 0, 1000, &o->cfg);
    else if (strcmp(a, "--seed") == 0) {
      ok = sdw_parse_i64(v, 0, INT64_MAX, &seed);
      o->seed = (uint64_t)seed;
    } else {
      fprintf(stderr, "sdw: eval: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: eval: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->model || (!o->data && !o->store)) {
    fprintf(stderr, "sdw: eval: give MODEL and --data DIR (see --help)\n");
    return 2;
  }
  return 0;
}

/* 16x16 average pool of a [3][S][S] float image (S a multiple of 16). */
static void features_chw(const float *img, int side, float *out) {
  const int f = side / FEAT_SIDE;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < FEAT_SIDE; y++)
      for (int x = 0; x < FEAT_SIDE; x++) {
        double s = 0;
        for (int dy = 0; dy < f; dy++)
          for (int dx = 0; dx < f; dx++)
            s += img[((size_t)c * side + y * f + dy) * side + x * f + dx];
        out[(c * FEAT_SIDE + y) * FEAT_SIDE + x] = (float)(s / (f * f));
      }
}

typedef struct gallery {
  int64_t n;
  int side;
  float *feat;    /* [n][3*16*16] */
  char **caption; /* [n] */
  sdw_latent_store *store;
} gallery;

static sdw_status gallery_load(const char *dir, gallery *g) {
  memset(g, 0, sizeof *g);
  SDW_TRY(sdw_latent_store_open(dir, &g->store));
  int C, H, W;
  sdw_latent_store_shape(g->store, &C, &H, &W);
  if (C != 3 || H != W || H % FEAT_SIDE || sdw_latent_store_scaling_factor(g->store) != 1.0)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s is not a pixel-space store (3 channels, square, a multiple of 16, "
                    "scaling 1: encode with --vae pixels, and give it with --store for a "
                    "model on VAE latents); it holds %dx%dx%d latents",
                    dir, C, H, W);
  g->n = sdw_latent_store_count(g->store);
  g->side = H;
  const size_t fd = 3 * FEAT_SIDE * FEAT_SIDE, px = (size_t)3 * H * W;
  g->feat = malloc((size_t)g->n * fd * sizeof(float));
  g->caption = calloc((size_t)g->n, sizeof *g->caption);
  float *img = malloc(px * sizeof(float));
  if (!g->feat || !g->caption || !img) {
    free(img);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the gallery");
  }
  for (int64_t i = 0; i < g->n; i++) {
    const uint16_t *lat = sdw_latent_store_latent(g->store, i);
    for (size_t k = 0; k < px; k++)
      img[k] = sdw_f16_to_f32(lat[k]);
    features_chw(img, H, g->feat + (size_t)i * fd);
    int64_t len = 0;
    const char *cap = sdw_latent_store_caption(g->store, i, &len);
    g->caption[i] = strndup(cap, (size_t)len);
    if (!g->caption[i]) {
      free(img);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    }
  }
  free(img);
  return SDW_OK;
}

static void gallery_free(gallery *g) {
  for (int64_t i = 0; g->caption && i < g->n; i++)
    free(g->caption[i]);
  free(g->caption);
  free(g->feat);
  sdw_latent_store_close(g->store);
}

/* Rank (0-based) of the first training image with the query's caption
 * among all training images sorted by distance to feat. */
static int64_t rank_of(const gallery *g, const float *feat, const char *caption, int64_t *nearest,
                       double *own_mse) {
  const size_t fd = 3 * FEAT_SIDE * FEAT_SIDE;
  double best_own = INFINITY, best_any = INFINITY;
  double *dist = malloc((size_t)g->n * sizeof *dist);
  if (!dist) return g->n;
  for (int64_t i = 0; i < g->n; i++) {
    double d = 0;
    const float *f = g->feat + (size_t)i * fd;
    for (size_t k = 0; k < fd; k++)
      d += ((double)f[k] - feat[k]) * ((double)f[k] - feat[k]);
    dist[i] = d;
    if (strcmp(g->caption[i], caption) == 0 && d < best_own) best_own = d;
    if (d < best_any) {
      best_any = d;
      *nearest = i;
    }
  }
  /* images strictly closer than the caption's own (ties go to the caption) */
  int64_t rank = 0;
  for (int64_t i = 0; i < g->n; i++)
    if (dist[i] < best_own && strcmp(g->caption[i], caption) != 0) rank++;
  free(dist);
  *own_mse = best_own / (double)fd;
  return rank;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static atomic_int g_cancel;
static void on_signal(int sig) {
  (void)sig;
  atomic_store(&g_cancel, 1);
}

typedef struct eval_result {
  int64_t top1, topk, n;
  double psnr_sum; /* PSNR of each sample against its own caption's image */
  int64_t *ranks;  /* [n]: per query, training images closer than its own */
  double seconds;
  int64_t step;
} eval_result;

/* Samples the queries with m and scores them. */
static sdw_status eval_model(const eval_options *o, sdw_demo_model *m, const gallery *g,
                             const int64_t *queries, int64_t nq, const char *label,
                             eval_result *r) {
  memset(r, 0, sizeof *r);
  r->step = m->step;
  r->ranks = calloc((size_t)nq, sizeof *r->ranks);
  sdw_txt2img_settings s = sdw_txt2img_settings_default();
  s.width = s.height = g->side;
  s.steps = (int)o->steps;
  s.cfg_scale = o->cfg;
  const size_t px = (size_t)3 * g->side * g->side;
  uint8_t *rgb = malloc((size_t)o->batch * px);
  float *img = malloc(px * sizeof(float)), feat[3 * FEAT_SIDE * FEAT_SIDE];
  sdw_txt2img_job *jobs = calloc((size_t)o->batch, sizeof *jobs);
  if (!rgb || !img || !jobs) {
    free(rgb);
    free(img);
    free(jobs);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  }
  sdw_txt2img_hooks hooks = {.cancel = &g_cancel};
  sdw_status st = SDW_OK;
  const double t0 = now_seconds();
  for (int64_t b = 0; b < nq && st == SDW_OK; b += o->batch) {
    const int count = (int)(nq - b < o->batch ? nq - b : o->batch);
    for (int i = 0; i < count; i++)
      jobs[i] = (sdw_txt2img_job){g->caption[queries[b + i]], NULL, o->seed + (uint64_t)(b + i)};
    st = sdw_txt2img_generate(m->pipe, &s, jobs, count, &hooks, rgb);
    for (int i = 0; i < count && st == SDW_OK; i++) {
      const uint8_t *im = rgb + (size_t)i * px;
      const int S = g->side;
      for (int c = 0; c < 3; c++)
        for (int p = 0; p < S * S; p++)
          img[(size_t)c * S * S + p] = im[(size_t)p * 3 + c] / 127.5f - 1.0f;
      features_chw(img, S, feat);
      int64_t nearest = 0;
      double own_mse = 0;
      const int64_t rank = rank_of(g, feat, jobs[i].prompt, &nearest, &own_mse);
      /* features in [-1, 1]: peak-to-peak 2; an exact match counts as 60 dB */
      r->psnr_sum += own_mse > 4e-6 ? 10.0 * log10(4.0 / own_mse) : 60.0;
      if (r->ranks) r->ranks[b + i] = rank;
      r->top1 += rank < 1;
      r->topk += rank < o->k;
      r->n++;
      if (o->images) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-%03lld.png", o->images, label, (long long)(b + i));
        /* the sample and its nearest training image side by side */
        uint8_t *pair = malloc(2 * px);
        if (pair) {
          const uint16_t *lat = sdw_latent_store_latent(g->store, nearest);
          uint8_t *near_rgb = pair + px;
          for (int c = 0; c < 3; c++)
            for (int p = 0; p < S * S; p++) {
              float v = sdw_f16_to_f32(lat[(size_t)c * S * S + p]) / 2 + 0.5f;
              v = v < 0 ? 0 : v > 1 ? 1 : v;
              near_rgb[p * 3 + c] = (uint8_t)lrintf(v * 255);
            }
          memcpy(pair, im, px);
          if (sdw_demo_write_grid(path, pair, 2, S, S < 64 ? 128 / S : 1, jobs[i].prompt) != SDW_OK)
            SDW_WARN("eval: cannot write %s: %s", path, sdw_last_error());
          free(pair);
        }
      }
    }
    fprintf(stderr, "eval %s: %lld/%lld images\r", label, (long long)(b + count), (long long)nq);
  }
  fprintf(stderr, "\n");
  r->seconds = now_seconds() - t0;
  free(rgb);
  free(img);
  free(jobs);
  return st;
}

static int run_eval(const eval_options *o) {
  char store_dir[4096];
  if (o->store)
    snprintf(store_dir, sizeof store_dir, "%s", o->store);
  else
    snprintf(store_dir, sizeof store_dir, "%s/latents/train", o->data);
  gallery g;
  sdw_status st = gallery_load(store_dir, &g);
  if (st != SDW_OK) {
    sdw_cli_report_error("eval");
    gallery_free(&g);
    return 1;
  }
  /* the queries: distinct captions in a seeded shuffled order */
  int64_t *order = malloc((size_t)g.n * sizeof *order), nq = 0;
  if (!order) {
    gallery_free(&g);
    return 1;
  }
  for (int64_t i = 0; i < g.n; i++)
    order[i] = i;
  sdw_rng rng = sdw_rng_make(o->seed, 0x6576616c);
  for (int64_t i = g.n - 1; i > 0; i--) {
    float u;
    sdw_rng_uniform(&rng, &u, 1);
    int64_t j = (int64_t)(u * (float)(i + 1));
    if (j > i) j = i;
    int64_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (int64_t i = 0; i < g.n && nq < o->count; i++) {
    bool dup = false;
    for (int64_t q = 0; q < nq && !dup; q++)
      dup = strcmp(g.caption[order[q]], g.caption[order[i]]) == 0;
    if (!dup) order[nq++] = order[i];
  }
  if (o->images) sdw_mkdir_p(o->images);
  struct sigaction sa, old_int;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, &old_int);

  eval_result trained = {0}, untrained = {0};
  sdw_demo_model m;
  st = sdw_demo_model_open(o->model, o->text_encoder, o->ema, false, 0, &m);
  eval_options resolved = *o; /* --cfg's default: the run's sample_cfg */
  if (st == SDW_OK && o->cfg < 0) resolved.cfg = m.sample_cfg;
  o = &resolved;
  if (st == SDW_OK) st = eval_model(o, &m, &g, order, nq, "trained", &trained);
  sdw_demo_model_close(&m);
  if (st == SDW_OK && o->baseline) {
    st = sdw_demo_model_open(o->model, o->text_encoder, o->ema, true, 42, &m);
    if (st == SDW_OK) st = eval_model(o, &m, &g, order, nq, "untrained", &untrained);
    sdw_demo_model_close(&m);
  }
  sigaction(SIGINT, &old_int, NULL);
  int rc = 0;
  if (st != SDW_OK) {
    sdw_cli_report_error("eval");
    rc = st == SDW_ERR_INTERRUPTED ? 130 : 1;
  } else {
    const double chance1 = 1.0 / (double)g.n, chancek = (double)o->k / (double)g.n;
    printf("prompt -> image retrieval over %lld training images, %lld captions, %lld DDIM steps, "
           "CFG %g\n",
           (long long)g.n, (long long)nq, (long long)o->steps, o->cfg);
    char label[64];
    snprintf(label, sizeof label, "trained (step %lld)", (long long)trained.step);
    printf("  %-26s top-1 %6.1f%%   top-%lld %6.1f%%   PSNR to own %5.2f dB   (%.1f s)\n", label,
           100.0 * trained.top1 / nq, (long long)o->k, 100.0 * trained.topk / nq,
           trained.psnr_sum / nq, trained.seconds);
    if (o->baseline)
      printf("  %-26s top-1 %6.1f%%   top-%lld %6.1f%%   PSNR to own %5.2f dB   (%.1f s)\n",
             "untrained (random init)", 100.0 * untrained.top1 / nq, (long long)o->k,
             100.0 * untrained.topk / nq, untrained.psnr_sum / nq, untrained.seconds);
    printf("  %-26s top-1 %6.1f%%   top-%lld %6.1f%%\n", "chance", 100 * chance1, (long long)o->k,
           100 * chancek);
    if (o->json) {
      cJSON *root = cJSON_CreateObject();
      cJSON_AddStringToObject(root, "format", "sdw-eval/1");
      cJSON_AddStringToObject(root, "model", o->model);
      cJSON_AddStringToObject(root, "store", store_dir);
      cJSON_AddNumberToObject(root, "gallery", (double)g.n);
      cJSON_AddNumberToObject(root, "count", (double)nq);
      cJSON_AddNumberToObject(root, "k", (double)o->k);
      cJSON_AddNumberToObject(root, "steps", (double)o->steps);
      cJSON_AddNumberToObject(root, "cfg", o->cfg);
      cJSON_AddNumberToObject(root, "seed", (double)o->seed);
      cJSON_AddStringToObject(root, "features", "16x16 average-pooled RGB in [-1,1], L2");
      cJSON *t = cJSON_AddObjectToObject(root, "trained");
      cJSON_AddNumberToObject(t, "step", (double)trained.step);
      cJSON_AddNumberToObject(t, "top1", (double)trained.top1 / nq);
      cJSON_AddNumberToObject(t, "topk", (double)trained.topk / nq);
      cJSON_AddNumberToObject(t, "own_psnr_db", trained.psnr_sum / nq);
      cJSON_AddNumberToObject(t, "seconds", trained.seconds);
      cJSON *tr = cJSON_AddArrayToObject(t, "ranks");
      for (int64_t i = 0; trained.ranks && i < nq; i++)
        cJSON_AddItemToArray(tr, cJSON_CreateNumber((double)trained.ranks[i]));
      if (o->baseline) {
        cJSON *u = cJSON_AddObjectToObject(root, "untrained");
        cJSON_AddNumberToObject(u, "top1", (double)untrained.top1 / nq);
        cJSON_AddNumberToObject(u, "topk", (double)untrained.topk / nq);
        cJSON_AddNumberToObject(u, "own_psnr_db", untrained.psnr_sum / nq);
        cJSON_AddNumberToObject(u, "seconds", untrained.seconds);
        cJSON *ur = cJSON_AddArrayToObject(u, "ranks");
        for (int64_t i = 0; untrained.ranks && i < nq; i++)
          cJSON_AddItemToArray(ur, cJSON_CreateNumber((double)untrained.ranks[i]));
      }
      cJSON *c = cJSON_AddObjectToObject(root, "chance");
      cJSON_AddNumberToObject(c, "top1", chance1);
      cJSON_AddNumberToObject(c, "topk", chancek);
      char *text = cJSON_Print(root);
      cJSON_Delete(root);
      st = text ? sdw_atomic_write(o->json, text, strlen(text))
                : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      free(text);
      if (st != SDW_OK) {
        sdw_cli_report_error("eval");
        rc = 1;
      }
    }
  }
  free(trained.ranks);
  free(untrained.ranks);
  free(order);
  gallery_free(&g);
  return rc;
}

int sdw_cmd_eval(int argc, char **argv) {
  eval_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  return run_eval(&o);
}
