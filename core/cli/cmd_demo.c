/* `sdw demo`: the whole product on the CPU in minutes (issue 9).
 *
 *   DIR/data            the data directory: the pipeline stages run on the
 *                       emoji set (emoji -> filter -> download from a
 *                       loopback HTTP server -> preprocess -> build ->
 *                       encode --vae pixels --store pixels -> train-vae ->
 *                       encode --vae DIR/data/vae; with --space pixels the
 *                       last three are encode --vae pixels), each as
 *                       `sdw pipeline STAGE` in a child process, with
 *                       progress lines; skipped when DIR/data/latents/train
 *                       is complete
 *   DIR/text_encoder    the frozen text encoder: a tiny CLIP made from a
 *                       seed (core/model/clip_init.h), no download
 *   DIR/run             the training run: `sdw train --detach` with
 *                       assets/demo/train.ini and assets/demo/unet-vae.json
 *                       (unet.json in pixel space); when DIR/run has a
 *                       config.ini the run continues
 *   DIR/run/samples/demo-step-N.png  previews of the demo prompts, made
 *                       by the demo from every new checkpoint (decoded
 *                       through the run's VAE, core/cli/demo_model.h)
 *
 * Then the workbench (`sdw attach DIR/run`, the previews made by a
 * background child) or, with --headless, progress lines for --minutes of
 * training, a stop (SIGTERM: the trainer checkpoints first), the grid of
 * the demo prompts (DIR/demo-grid.png) and `sdw eval` (DIR/eval.json). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/cli/cli.h"
#include "core/cli/demo_model.h"
#include "core/model/clip_init.h"
#include "pipeline/http_serve.h"

extern char **environ;

/* The demo's emoji (pipeline emoji --only): the subgroups of the demo
 * prompts and their neighbours: 277 single code point emoji. Two cores
 * train about 160 000 images in ten minutes, some 570 showings of each of
 * these (retrieval top-1 100%); the whole font, each emoji seen some 50
 * times in a measured ten minutes, stayed near chance (README "The demo").
 * --only all trains the whole font. */
#define DEMO_SET                                                                                   \
  "food-fruit,food-vegetable,food-prepared,food-sweet,heart,transport-air,animal-mammal,"          \
  "animal-bird,animal-marine,face-smiling,face-affection,plant-flower,sport"

/* The demo prompts (issue 9): what the previews and the final grid show. */
static const char *const demo_prompts[] = {"red apple", "rocket", "cat face", "pizza", "red heart"};
enum { DEMO_PROMPTS = 5 };

typedef struct demo_options {
  const char *dir;
  const char *only; /* pipeline emoji --only: groups/subgroups ("all": the whole font) */
  bool vae;         /* --space vae: the latents of a tiny VAE trained as a stage */
  bool space_given; /* --space was given (else a directory keeps its own) */
  bool headless, all_emoji, eval;
  bool previewer; /* internal: the interactive demo's preview process */
  double minutes;
  int64_t steps, limit, eval_count, eval_steps, preview_steps, vae_steps;
} demo_options;

static void usage(FILE *f) {
  fprintf(f, "usage: sdw demo [--dir DIR] [--headless [--minutes M]] [options]\n"
             "\n"
             "The whole of sdw on this machine's CPU: builds a captioned data set from the\n"
             "Noto Color Emoji font with the pipeline stages, trains a tiny VAE and a small\n"
             "latent text-to-image model on it and opens the workbench on the run (q detaches;\n"
             "the training goes on). Running it again continues the run.\n"
             "\n"
             "  --dir DIR            where data, text encoder and run go (default ./demo)\n"
             "  --headless           no workbench: progress lines for --minutes of training,\n"
             "                       then stop, the sample grid DIR/demo-grid.png and the\n"
             "                       retrieval report DIR/eval.json\n"
             "  --minutes M          training time of --headless (default 10)\n"
             "  --steps N            stop training after N optimizer steps in all\n"
             "  --only LIST          the emoji groups/subgroups to train on (comma list, as\n"
             "                       sdw pipeline emoji --only; default the demo set of 277\n"
             "                       food, animal, flower, heart, face, sport and aircraft\n"
             "                       emoji); all: the whole font\n"
             "  --space vae|pixels   what the model denoises: the 8x8x4 latents of a tiny VAE\n"
             "                       that the pipeline trains first (train-vae, --vae-steps;\n"
             "                       the default), or the 16x16 images themselves (README\n"
             "                       \"The demo\" compares the two)\n"
             "  --vae-steps N        train-vae steps of --space vae (default 900)\n"
             "  --all-emoji          also the multi-code-point emoji (3655 instead of 1377)\n"
             "  --limit N            at most N emoji (a quick look; default all)\n"
             "  --preview-steps S    DDIM steps of the previews and the grid (default 25)\n"
             "  --eval-count N       captions of the retrieval report (default 100)\n"
             "  --eval-steps S       DDIM steps of the report's images (default 25)\n"
             "  --no-eval            skip the report\n"
             "  --help               this text\n");
}

static int parse_options(int argc, char **argv, demo_options *o) {
  memset(o, 0, sizeof *o);
  o->dir = "demo";
  o->only = DEMO_SET;
  o->minutes = 10;
  o->eval = true;
  o->eval_count = 100;
  o->eval_steps = 25;
  o->preview_steps = 25;
  o->vae = true; /* README "The demo": better samples than pixel space in the same minutes */
  o->vae_steps = 900;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--headless") == 0) {
      o->headless = true;
      continue;
    }
    if (strcmp(a, "--all-emoji") == 0) {
      o->all_emoji = true;
      continue;
    }
    if (strcmp(a, "--no-eval") == 0) {
      o->eval = false;
      continue;
    }
    if (strcmp(a, "--previewer") == 0) {
      o->previewer = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: demo: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    if (strcmp(a, "--dir") == 0)
      o->dir = v;
    else if (strcmp(a, "--only") == 0)
      o->only = v;
    else if (strcmp(a, "--space") == 0) {
      ok = strcmp(v, "pixels") == 0 || strcmp(v, "vae") == 0;
      o->vae = strcmp(v, "vae") == 0;
      o->space_given = true;
    } else if (strcmp(a, "--vae-steps") == 0)
      ok = sdw_parse_i64(v, 1, 100000000, &o->vae_steps);
    else if (strcmp(a, "--minutes") == 0)
      ok = sdw_parse_double(v, 0, 1e6, &o->minutes);
    else if (strcmp(a, "--steps") == 0)
      ok = sdw_parse_i64(v, 1, INT64_MAX, &o->steps);
    else if (strcmp(a, "--limit") == 0)
      ok = sdw_parse_i64(v, 1, INT64_MAX, &o->limit);
    else if (strcmp(a, "--eval-count") == 0)
      ok = sdw_parse_i64(v, 1, 1000000, &o->eval_count);
    else if (strcmp(a, "--eval-steps") == 0)
      ok = sdw_parse_i64(v, 1, 1000, &o->eval_steps);
    else if (strcmp(a, "--preview-steps") == 0)
      ok = sdw_parse_i64(v, 1, 1000, &o->preview_steps);
    else {
      fprintf(stderr, "sdw: demo: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: demo: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  return 0;
}

/* --- helpers ------------------------------------------------------------------------------ */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  printf("demo %02d:%02d:%02d ", tm.tm_hour, tm.tm_min, tm.tm_sec);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

static bool exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* What encoded DATA/latents/train (its index.json's "vae": "pixels" or the
 * VAE's path) into buf; "" when unknown. */
static void store_encoder(const char *data, char *buf, size_t size) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/latents/train/index.json", data);
  buf[0] = '\0';
  void *text = NULL;
  size_t n = 0;
  if (sdw_read_file(path, &text, &n) != SDW_OK) return;
  cJSON *root = cJSON_ParseWithLength(text, n);
  free(text);
  const cJSON *v = root ? cJSON_GetObjectItem(root, "vae") : NULL;
  if (cJSON_IsString(v)) snprintf(buf, size, "%s", v->valuestring);
  cJSON_Delete(root);
}

/* Runs this sdw binary with argv (NULL-terminated, argv[0] ignored) and
 * waits: the exit status, or -1 when it could not start. Through
 * /proc/self/exe: the very binary running, even when a rebuild replaced the
 * file meanwhile. */
static int run_sdw(char **argv) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  argv[0] = exe;
  pid_t pid;
  fflush(stdout);
  fflush(stderr);
  if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The assets folder (the one holding clip/ with the vocabulary). */
static sdw_status find_assets(char *buf, size_t size) {
  char vocab[PATH_MAX - 16];
  SDW_TRY(sdw_tokenizer_default_vocab(vocab, sizeof vocab));
  for (int k = 0; k < 2; k++) {
    char *slash = strrchr(vocab, '/');
    if (slash) *slash = '\0';
  }
  snprintf(buf, size, "%s/demo", vocab);
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/train.ini", buf);
  if (!exists(probe))
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "the demo's configuration %s is missing — run sdw from its source tree or "
                    "set SDW_ASSETS to the sources' assets/ folder",
                    probe);
  return SDW_OK;
}

/* The side of the demo's images: 16x16 (README "The demo": in pixel space
 * a step at 32x32 takes about twice as long, so each emoji is seen half as
 * often in the same minutes; through the VAE 32x32 retrieves 98% but its
 * samples sit further from their emoji than 16x16's). */
#define DEMO_SIDE "16"
/* assets/demo/train.ini's local_ranks and batch_size (per rank): two
 * single-threaded ranks of 16 images, a global batch of 32 */
#define DEMO_RANKS 2
#define DEMO_BATCH 16

/* --- the pipeline ------------------------------------------------------------------------- */

typedef struct demo_paths {
  char dir[PATH_MAX], data[PATH_MAX + 16], run[PATH_MAX + 16], te[PATH_MAX + 32];
  char assets[PATH_MAX], grid[PATH_MAX + 32], eval[PATH_MAX + 32];
  int side; /* the training images' side (the store's image_size) */
} demo_paths;

/* The number of pipeline stages: 6 in pixel space, 8 with --space vae. */
static int g_stage_count = 6;

static int stage(int index, const char *name, char **argv) {
  say("[%d/%d] pipeline %s", index, g_stage_count, name);
  const double t0 = now_seconds();
  int rc = run_sdw(argv);
  if (rc != 0) {
    fprintf(stderr,
            "sdw: demo: the %s stage failed (exit status %d); its manifest is in the "
            "data directory's manifests/ — fix the cause and run sdw demo again\n",
            name, rc);
    return rc == 130 ? 130 : 1;
  }
  say("[%d/%d] %s done in %.1f s", index, g_stage_count, name, now_seconds() - t0);
  return 0;
}

static int run_pipeline(const demo_options *o, const demo_paths *p) {
  char emoji_dir[PATH_MAX + 32], store_index[PATH_MAX + 64];
  snprintf(store_index, sizeof store_index, "%s/latents/train/index.json", p->data);
  g_stage_count = o->vae ? 8 : 6;
  if (exists(store_index)) {
    char encoder[PATH_MAX];
    store_encoder(p->data, encoder, sizeof encoder);
    if ((strcmp(encoder, "pixels") != 0) != o->vae) {
      fprintf(stderr,
              "sdw: demo: %s holds a %s store, not what --space %s trains on; give another "
              "--dir (or remove %s/latents and %s/run)\n",
              p->data, strcmp(encoder, "pixels") == 0 ? "pixel-space" : "VAE latent",
              o->vae ? "vae" : "pixels", p->data, p->dir);
      return 2;
    }
    say("data set ready (%s): pipeline skipped", store_index);
    return 0;
  }
  snprintf(emoji_dir, sizeof emoji_dir, "%s/emoji", p->data);
  if (sdw_mkdir_p(emoji_dir) != SDW_OK) {
    sdw_cli_report_error("demo");
    return 1;
  }
  sdw_http_server *server = NULL;
  int port = 0;
  if (sdw_http_server_start(emoji_dir, 0, &server, &port) != SDW_OK) {
    sdw_cli_report_error("demo");
    return 1;
  }
  say("serving %s on http://127.0.0.1:%d/ for the download stage", emoji_dir, port);
  char url[64], limit[32], meta[PATH_MAX + 64], filtered[PATH_MAX + 64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
  snprintf(limit, sizeof limit, "%lld", (long long)o->limit);
  snprintf(meta, sizeof meta, "%s/metadata.parquet", emoji_dir);
  snprintf(filtered, sizeof filtered, "%s/filtered/filtered.parquet", p->data);
  char *data = (char *)p->data;
  int rc = 0;
  {
    /* captions: the names alone, what the demo prompts say (the random,
     * frozen text encoder knows no synonyms: the prompt must be the words
     * the model saw) */
    char *argv[18] = {NULL,         "pipeline", "emoji",      "--data", data,
                      "--url-base", url,        "--captions", "names"};
    int n = 9;
    if (!o->all_emoji) argv[n++] = "--single";
    if (o->limit) {
      argv[n++] = "--limit";
      argv[n++] = limit;
    }
    if (strcmp(o->only, "all") != 0) {
      argv[n++] = "--only";
      argv[n++] = (char *)o->only;
    }
    rc = stage(1, "emoji", argv);
  }
  if (!rc) {
    /* relaxed thresholds: emoji are 136x136, captions short ("ox"), quality
     * columns constants (see pipeline/stage_emoji.c) */
    char *argv[] = {NULL, "pipeline",        "filter", "--data",           data, "--input",
                    meta, "--min-aesthetic", "0",      "--min-similarity", "0",  "--min-width",
                    "32", "--min-height",    "32",     "--min-caption",    "2",  NULL};
    rc = stage(2, "filter", argv);
  }
  if (!rc) {
    char *argv[] = {NULL,      "pipeline",  "download",     "--data", data,
                    "--input", filtered,    "--image-size", "64",     "--concurrency",
                    "8",       "--timeout", "30",           NULL};
    rc = stage(3, "download", argv);
  }
  say("loopback server answered %ld requests", sdw_http_server_requests(server));
  sdw_http_server_stop(server);
  if (!rc) {
    /* emoji on white: bright images are the point (--max-mean 255), and
     * small ones are fine (--min-size 0) */
    char *argv[] = {NULL,         "pipeline",   "preprocess",   "--data", data,
                    "--min-size", "0",          "--image-size", "64",     "--min-caption",
                    "2",          "--max-mean", "255",          NULL};
    rc = stage(4, "preprocess", argv);
  }
  if (!rc) {
    /* no validation split: every emoji is a training image, the demo
     * prompts included (the report samples training captions) */
    char *argv[] = {NULL, "pipeline", "build", "--data", data, "--val-size", "0", NULL};
    rc = stage(5, "build", argv);
  }
  if (!rc && !o->vae) {
    char *argv[] = {NULL,    "pipeline", "encode",       "--data",  data,
                    "--vae", "pixels",   "--image-size", DEMO_SIDE, NULL};
    rc = stage(6, "encode", argv);
  }
  if (!rc && o->vae) {
    /* the images a VAE trains on: a second store of the same set, in
     * pixels (also the gallery of the retrieval report) */
    char *argv[] = {NULL,     "pipeline", "encode", "--data",       data,      "--vae",
                    "pixels", "--store",  "pixels", "--image-size", DEMO_SIDE, NULL};
    rc = stage(6, "encode (pixels)", argv);
  }
  char vae_steps[32], vae_dir[PATH_MAX + 32];
  snprintf(vae_steps, sizeof vae_steps, "%lld", (long long)o->vae_steps);
  snprintf(vae_dir, sizeof vae_dir, "%s/vae", p->data);
  if (!rc && o->vae) {
    char *argv[] = {NULL,     "pipeline", "train-vae", "--data",  data,      "--images",
                    "pixels", "--out",    "vae",       "--steps", vae_steps, NULL};
    rc = stage(7, "train-vae", argv);
  }
  if (!rc && o->vae) {
    char *argv[] = {NULL,    "pipeline", "encode",       "--data",  data,
                    "--vae", vae_dir,    "--image-size", DEMO_SIDE, NULL};
    rc = stage(8, "encode", argv);
  }
  return rc;
}

/* --- text encoder ------------------------------------------------------------------------- */

static int make_text_encoder(const demo_paths *p) {
  char weights[PATH_MAX + 64];
  snprintf(weights, sizeof weights, "%s/model.safetensors", p->te);
  if (exists(weights)) return 0;
  sdw_ctx *ctx = NULL;
  sdw_clip_text te;
  bool te_ok = false;
  /* the demo's text encoder: CLIP's tokenizer and 77 positions, 64 wide,
   * 2 layers of 4 heads, random and frozen as the seed's design has it */
  sdw_clip_text_config c = sdw_clip_text_config_vit_l14();
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.intermediate_size = 256;
  sdw_status st = sdw_ctx_create(sdw_backend_cpu(), 0, &ctx);
  if (st == SDW_OK && (st = sdw_clip_text_init(&te, ctx, &c)) == SDW_OK) te_ok = true;
  if (st == SDW_OK) st = sdw_clip_text_init_random(&te, 42);
  if (st == SDW_OK)
    st = sdw_clip_text_save(&te, p->te, "sdw demo: random CLIP text encoder (seed 42), frozen");
  if (te_ok) sdw_clip_text_free(&te);
  if (ctx) sdw_ctx_destroy(ctx);
  if (st != SDW_OK) {
    sdw_cli_report_error("demo: text encoder");
    return 1;
  }
  say("text encoder: random CLIP (64 wide, 2 layers, seed 42) in %s", p->te);
  return 0;
}

/* --- the run -------------------------------------------------------------------------------- */

typedef struct job_status {
  bool ok;
  char state[32];
  long pid;
  int64_t step, total;
  double loss, img_per_s, eta_s;
} job_status;

static job_status read_job(const char *run) {
  job_status j;
  memset(&j, 0, sizeof j);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/job.json", run);
  void *data = NULL;
  size_t size = 0;
  if (sdw_read_file(path, &data, &size) != SDW_OK) return j;
  cJSON *root = cJSON_ParseWithLength(data, size);
  free(data);
  if (!root) return j;
  const cJSON *v;
  if (cJSON_IsString(v = cJSON_GetObjectItem(root, "state")))
    snprintf(j.state, sizeof j.state, "%s", v->valuestring);
  if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "pid"))) j.pid = (long)v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "step"))) j.step = (int64_t)v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "total_steps")))
    j.total = (int64_t)v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "loss"))) j.loss = v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "img_per_s"))) j.img_per_s = v->valuedouble;
  if (cJSON_IsNumber(v = cJSON_GetObjectItem(root, "eta_s"))) j.eta_s = v->valuedouble;
  j.ok = true;
  cJSON_Delete(root);
  return j;
}

static bool job_alive(const job_status *j) {
  if (!j->ok || j->pid <= 0) return false;
  if (strcmp(j->state, "finished") == 0 || strcmp(j->state, "failed") == 0 ||
      strcmp(j->state, "stopped") == 0)
    return false;
  return kill((pid_t)j->pid, 0) == 0;
}

/* Samples in DATA/latents/SPLIT (0 when there is no complete store);
 * *side (may be NULL) receives the images' side (index.json's image_size:
 * the store's latent side times the VAE's downscale; 0 when unknown). */
static int64_t store_info(const char *data, const char *split, int *side) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/latents/%s/index.json", data, split);
  if (side) *side = 0;
  void *text = NULL;
  size_t size = 0;
  if (sdw_read_file(path, &text, &size) != SDW_OK) return 0;
  cJSON *root = cJSON_ParseWithLength(text, size);
  free(text);
  const cJSON *c = root ? cJSON_GetObjectItem(root, "count") : NULL;
  const cJSON *size_item = root ? cJSON_GetObjectItem(root, "image_size") : NULL;
  int64_t n = cJSON_IsNumber(c) ? (int64_t)c->valuedouble : 0;
  if (side && cJSON_IsNumber(size_item)) *side = (int)size_item->valuedouble;
  cJSON_Delete(root);
  return n;
}

/* p->side (the images' side) from the training store; 1 (after saying so)
 * when it has none. */
static int read_side(demo_paths *p) {
  store_info(p->data, "train", &p->side);
  if (p->side >= 8) return 0;
  fprintf(stderr,
          "sdw: demo: %s/latents/train/index.json gives no image size; remove %s/latents "
          "and run sdw demo again to encode the data anew\n",
          p->data, p->data);
  return 1;
}

static int start_training(const demo_options *o, const demo_paths *p) {
  job_status j = read_job(p->run);
  if (job_alive(&j)) {
    say("training already running (pid %ld, step %lld)", j.pid, (long long)j.step);
    return 0;
  }
  char config_ini[PATH_MAX + 32], cfg[PATH_MAX + 32], model[PATH_MAX + 64], train[PATH_MAX + 64],
      val[PATH_MAX + 64], te[PATH_MAX + 64], steps[64], batch[64], ranks[64], vae[PATH_MAX + 64];
  snprintf(config_ini, sizeof config_ini, "%s/config.ini", p->run);
  snprintf(cfg, sizeof cfg, "%s/train.ini", p->assets);
  /* --space vae: the same UNet on 4 latent channels, the VAE for previews */
  snprintf(model, sizeof model, "model=%s/%s", p->assets, o->vae ? "unet-vae.json" : "unet.json");
  snprintf(vae, sizeof vae, "vae=%s/vae", p->data);
  snprintf(train, sizeof train, "train_data=%s/latents/train", p->data);
  snprintf(val, sizeof val, "val_data=%s/latents/val", p->data);
  /* the validation loss needs a full batch (sdw train refuses a smaller
   * val_data); the demo builds no validation split (run_pipeline), a data
   * directory from an older sdw may have one */
  const int64_t train_count = store_info(p->data, "train", NULL);
  /* a small (--limit) set: one global batch of (almost) all of it instead
   * of train.ini's */
  int64_t nranks = DEMO_RANKS, batch_size = DEMO_BATCH;
  if (train_count > 0 && train_count < DEMO_RANKS * DEMO_BATCH) {
    nranks = train_count >= DEMO_RANKS ? DEMO_RANKS : 1;
    batch_size = train_count / nranks;
  }
  const bool use_val = store_info(p->data, "val", NULL) >= batch_size;
  snprintf(te, sizeof te, "text_encoder=%s", p->te);
  snprintf(steps, sizeof steps, "max_steps=%lld", (long long)o->steps);
  snprintf(batch, sizeof batch, "batch_size=%lld", (long long)batch_size);
  snprintf(ranks, sizeof ranks, "local_ranks=%lld", (long long)nranks);
  char *run = (char *)p->run;
  int rc;
  if (exists(config_ini)) {
    void *text = NULL;
    size_t n = 0;
    char have[PATH_MAX] = "";
    if (sdw_read_file(config_ini, &text, &n) == SDW_OK) {
      char *z = realloc(text, n + 1);
      if (z) {
        z[n] = '\0';
        sdw_run_config_value(z, "vae", have, sizeof have);
        text = z;
      }
      free(text);
    }
    if ((strcmp(have, "pixels") != 0) != o->vae) {
      fprintf(stderr, "sdw: demo: the run %s trains on %s, not --space %s; give another --dir\n",
              p->run, strcmp(have, "pixels") == 0 ? "pixels" : "VAE latents",
              o->vae ? "vae" : "pixels");
      return 2;
    }
    say("continuing the run %s", p->run);
    char *argv[] = {NULL, "train", "--run", run, "--detach", NULL, NULL, NULL};
    if (o->steps) {
      argv[5] = "--set";
      argv[6] = steps;
    }
    rc = run_sdw(argv);
  } else {
    say("starting the run %s (%s)", p->run, cfg);
    char *argv[24] = {NULL,  "train", "--config", cfg,     "--run", run,       "--set",
                      model, "--set", train,      "--set", te,      "--detach"};
    int n = 13;
    if (o->vae) {
      argv[n++] = "--set";
      argv[n++] = vae;
    }
    if (use_val) {
      argv[n++] = "--set";
      argv[n++] = val;
    }
    if (o->steps) {
      argv[n++] = "--set";
      argv[n++] = steps;
    }
    if (batch_size != DEMO_BATCH) {
      argv[n++] = "--set";
      argv[n++] = batch;
    }
    if (nranks != DEMO_RANKS) {
      argv[n++] = "--set";
      argv[n++] = ranks;
    }
    rc = run_sdw(argv);
  }
  if (rc != 0) {
    fprintf(stderr, "sdw: demo: sdw train did not start (exit status %d); see %s/train.log\n", rc,
            p->run);
    return 1;
  }
  return 0;
}

/* --- previews ----------------------------------------------------------------------------- */

/* Samples the demo prompts from the checkpoint at path into a grid PNG at
 * out. seconds receives the time it took. */
static sdw_status make_grid(const char *checkpoint, int side, int steps, const char *out,
                            int64_t *step, double *seconds) {
  const double t0 = now_seconds();
  sdw_demo_model m;
  sdw_status st = sdw_demo_model_open(checkpoint, NULL, -1, false, 0, &m);
  uint8_t *rgb = NULL;
  if (st == SDW_OK) {
    sdw_txt2img_settings s = sdw_txt2img_settings_default();
    s.width = s.height = side;
    s.steps = steps;
    s.cfg_scale = m.sample_cfg; /* assets/demo/train.ini's */
    sdw_txt2img_job jobs[DEMO_PROMPTS];
    for (int i = 0; i < DEMO_PROMPTS; i++)
      jobs[i] = (sdw_txt2img_job){demo_prompts[i], NULL, 42};
    rgb = malloc((size_t)DEMO_PROMPTS * side * side * 3);
    if (!rgb) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == SDW_OK) st = sdw_txt2img_generate(m.pipe, &s, jobs, DEMO_PROMPTS, NULL, rgb);
    char info[PATH_MAX + 1024];
    snprintf(info, sizeof info,
             "%s | %s | %s | %s | %s\nSteps: %d, Sampler: DDIM, CFG scale: %g, Seed: 42, Size: "
             "%dx%d, Model: %s, Step: %lld, EMA: %s, Version: sdw " SDW_VERSION,
             demo_prompts[0], demo_prompts[1], demo_prompts[2], demo_prompts[3], demo_prompts[4],
             steps, s.cfg_scale, side, side, m.checkpoint, (long long)m.step, m.ema ? "yes" : "no");
    /* cells of 128 pixels (nearest: the pixels stay visible) */
    const int scale = side < 128 ? 128 / side : 1;
    if (st == SDW_OK) st = sdw_demo_write_grid(out, rgb, DEMO_PROMPTS, side, scale, info);
    *step = m.step;
  }
  sdw_demo_model_close(&m);
  free(rgb);
  *seconds = now_seconds() - t0;
  return st;
}

/* Makes a preview from every new checkpoint of the run until the job is
 * no longer alive (or deadline passes, when > 0). first_preview receives
 * the seconds from start to the first preview (or stays negative). */
typedef struct preview_state {
  char last[PATH_MAX + 64];
  double first_preview;
  int64_t step;
} preview_state;

static void preview_once(const demo_options *o, const demo_paths *p, preview_state *ps,
                         double start, bool print) {
  char ck[PATH_MAX + 64];
  if (sdw_demo_latest_checkpoint(p->run, ck, sizeof ck) != SDW_OK) return;
  if (strcmp(ck, ps->last) == 0) return;
  snprintf(ps->last, sizeof ps->last, "%s", ck);
  char out[PATH_MAX + 64], tmp[PATH_MAX + 64];
  snprintf(tmp, sizeof tmp, "%s/samples/.demo-preview.png", p->run);
  int64_t step = 0;
  double secs = 0;
  char samples[PATH_MAX + 32];
  snprintf(samples, sizeof samples, "%s/samples", p->run);
  sdw_mkdir_p(samples);
  if (make_grid(ck, p->side, (int)o->preview_steps, tmp, &step, &secs) != SDW_OK) {
    if (print) say("preview failed: %s", sdw_last_error());
    return;
  }
  snprintf(out, sizeof out, "%s/samples/demo-step-%08lld.png", p->run, (long long)step);
  if (rename(tmp, out) != 0) return;
  ps->step = step;
  if (ps->first_preview < 0) ps->first_preview = now_seconds() - start;
  if (print) say("preview of step %lld: %s (%.1f s to make)", (long long)step, out, secs);
}

/* --- headless ------------------------------------------------------------------------------- */

static int headless(const demo_options *o, const demo_paths *p, long old_pid) {
  const double start = now_seconds(), deadline = start + o->minutes * 60;
  preview_state ps = {.first_preview = -1};
  /* the demo's own sampling stays on one thread: the run has the cores */
  omp_set_num_threads(1);
  double last_line = 0;
  job_status j = read_job(p->run);
  const int64_t first_step = j.step;
  bool alive = true;
  while (now_seconds() < deadline) {
    j = read_job(p->run);
    /* job.json may not exist yet, or still be the previous job's (a
     * continued run): the new job has two minutes to take it over */
    alive = job_alive(&j) || !j.ok || (j.pid == old_pid && now_seconds() - start < 120);
    if (!alive && now_seconds() - start > 5) break;
    preview_once(o, p, &ps, start, true);
    if (now_seconds() - last_line >= 10 && j.ok) {
      last_line = now_seconds();
      char total[32] = "";
      if (j.total > 0) snprintf(total, sizeof total, "/%lld", (long long)j.total);
      say("step %lld%s  loss %.4f  %.1f img/s  %s  (%.0f s of %.0f)", (long long)j.step, total,
          j.loss, j.img_per_s, j.state, now_seconds() - start, o->minutes * 60);
    }
    usleep(500 * 1000);
  }
  j = read_job(p->run);
  if (job_alive(&j)) {
    say("stopping the run (pid %ld): it checkpoints first", j.pid);
    kill((pid_t)j.pid, SIGTERM);
    for (int i = 0; i < 1200 && kill((pid_t)j.pid, 0) == 0; i++)
      usleep(100 * 1000);
  }
  j = read_job(p->run);
  const double trained = now_seconds() - start;
  say("trained %.0f s: steps %lld -> %lld (%s)", trained, (long long)first_step, (long long)j.step,
      j.state);
  char ck[PATH_MAX + 64];
  if (sdw_demo_latest_checkpoint(p->run, ck, sizeof ck) != SDW_OK) {
    fprintf(stderr, "sdw: demo: the run wrote no checkpoint (see %s/events.log)\n", p->run);
    return 1;
  }
  int64_t step = 0;
  double secs = 0;
  if (make_grid(ck, p->side, (int)o->preview_steps, p->grid, &step, &secs) != SDW_OK) {
    sdw_cli_report_error("demo: grid");
    return 1;
  }
  say("sample grid (%s | %s | %s | %s | %s) of step %lld: %s", demo_prompts[0], demo_prompts[1],
      demo_prompts[2], demo_prompts[3], demo_prompts[4], (long long)step, p->grid);
  if (ps.first_preview >= 0)
    say("first preview %.1f s after the demo started training", ps.first_preview);
  if (o->eval) {
    char count[32], steps[32];
    snprintf(count, sizeof count, "%lld", (long long)o->eval_count);
    snprintf(steps, sizeof steps, "%lld", (long long)o->eval_steps);
    /* the gallery: the training images themselves (with --space vae the
     * pixel store the VAE trained on, not the VAE's latents) */
    char gallery[PATH_MAX + 64];
    snprintf(gallery, sizeof gallery, "%s/%s/train", p->data, o->vae ? "pixels" : "latents");
    char *argv[] = {NULL,  "eval",    (char *)p->run, "--store", gallery,         "--count",
                    count, "--steps", steps,          "--json",  (char *)p->eval, NULL};
    say("retrieval report (sdw eval, %s captions)", count);
    int rc = run_sdw(argv);
    if (rc != 0) {
      fprintf(stderr,
              "sdw: demo: sdw eval %s (exit status %d); run it again with: sdw eval %s "
              "--data %s\n",
              rc < 0 ? "did not start" : "failed", rc, p->run, p->data);
      return rc == 130 ? 130 : 1;
    }
    say("report: %s", p->eval);
  }
  return 0;
}

/* --- interactive ------------------------------------------------------------------------------ */

/* The previewer (`sdw demo --dir DIR --previewer`, started by the
 * interactive demo in its own session): a preview from every new checkpoint
 * until the run ends. */
static int previewer(const demo_options *o, const demo_paths *p) {
  omp_set_num_threads(1);
  preview_state ps = {.first_preview = -1};
  const double start = now_seconds();
  for (;;) {
    job_status j = read_job(p->run);
    if (j.ok && !job_alive(&j)) break;
    preview_once(o, p, &ps, start, false);
    sleep(2);
  }
  return 0;
}

static int interactive(const demo_options *o, const demo_paths *p) {
  char exe[PATH_MAX], steps[32];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 1;
  exe[n] = '\0';
  /* previews from a process of its own, detached from the terminal */
  snprintf(steps, sizeof steps, "%lld", (long long)o->preview_steps);
  char *pv[] = {exe,   "demo",        "--dir", (char *)p->dir, "--preview-steps",
                steps, "--previewer", NULL};
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  posix_spawn_file_actions_init(&fa);
  for (int fd = 0; fd < 3; fd++)
    posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", fd ? O_WRONLY : O_RDONLY, 0);
  pid_t pid;
  if (posix_spawn(&pid, "/proc/self/exe", &fa, &attr, pv, environ) != 0)
    say("previews: cannot start the previewer (%s); the workbench shows the run without them",
        strerror(errno));
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  say("opening the workbench: q detaches (the training goes on); sdw attach %s reattaches", p->run);
  char *argv[] = {exe, "attach", (char *)p->run, NULL};
  fflush(stdout);
  execv("/proc/self/exe", argv);
  fprintf(stderr, "sdw: demo: cannot start the workbench: %s\n", strerror(errno));
  return 1;
}

int sdw_cmd_demo(int argc, char **argv) {
  demo_options o;
  int rc = parse_options(argc, argv, &o);
  if (rc == 1) {
    usage(stdout);
    return 0;
  }
  if (rc) return 2;
  demo_paths p;
  memset(&p, 0, sizeof p);
  if (sdw_mkdir_p(o.dir) != SDW_OK || !realpath(o.dir, p.dir)) {
    fprintf(stderr, "sdw: demo: cannot create %s: %s\n", o.dir, strerror(errno));
    return 1;
  }
  snprintf(p.data, sizeof p.data, "%s/data", p.dir);
  snprintf(p.run, sizeof p.run, "%s/run", p.dir);
  snprintf(p.te, sizeof p.te, "%s/text_encoder", p.dir);
  snprintf(p.grid, sizeof p.grid, "%s/demo-grid.png", p.dir);
  snprintf(p.eval, sizeof p.eval, "%s/eval.json", p.dir);
  if (find_assets(p.assets, sizeof p.assets) != SDW_OK) {
    sdw_cli_report_error("demo");
    return 1;
  }
  if (o.previewer) /* the pipeline ran before it was started */
    return read_side(&p) ? 1 : previewer(&o, &p);
  if (!o.headless && !isatty(STDOUT_FILENO)) {
    say("standard output is not a terminal: running headless (--headless)");
    o.headless = true;
  }
  say("directory %s", p.dir);
  /* a directory made before (by an older sdw, pixel space its default, or
   * with --space) continues in its own space unless --space says otherwise */
  char encoder[PATH_MAX];
  store_encoder(p.data, encoder, sizeof encoder);
  if (!o.space_given && encoder[0] && (strcmp(encoder, "pixels") != 0) != o.vae) {
    o.vae = !o.vae;
    say("%s was made in %s: continuing in it", p.data, o.vae ? "VAE latents" : "pixel space");
  }
  /* the stages run alone: OpenMP's default (spinning) wait policy suits
   * them (train-vae ran 1.5x slower with the passive one) */
  if ((rc = run_pipeline(&o, &p)) != 0) return rc;
  /* the run and the demo's own sampling share two cores: OpenMP threads
   * that spin at barriers while the other process holds a core cost 5-10x
   * (measured: 80% of the training's cycles in libgomp's spin loop) */
  setenv("OMP_WAIT_POLICY", "passive", 0);
  if (read_side(&p)) return 1;
  if ((rc = make_text_encoder(&p)) != 0) return rc;
  const job_status before = read_job(p.run);
  const long old_pid = job_alive(&before) ? 0 : before.pid; /* 0: that one goes on */
  if ((rc = start_training(&o, &p)) != 0) return rc;
  return o.headless ? headless(&o, &p, old_pid) : interactive(&o, &p);
}
