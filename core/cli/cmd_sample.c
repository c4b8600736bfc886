/* `sdw sample`: prompts -> PNG images with AUTOMATIC1111 infotexts.
 *
 *   sdw sample --model PATH --prompt "a red fox" [--prompt ...] [options]
 *
 * The work is done by the txt2img pipeline (core/diffusion/txt2img.h); this
 * file parses options, names the outputs as the seed's inference.py does,
 * draws the progress bar and handles Ctrl-C (the sampler stops between
 * steps; the image being made is not written; exit status 130). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "core/cli/cli.h"
#include "core/cli/demo_model.h"
#include "core/diffusion/txt2img.h"
#include "core/model/unicode_tables.h"

static void print_help(FILE *out) {
  fprintf(out,
          "usage: sdw sample --model PATH (--prompt TEXT ... | --prompts-file FILE) [options]\n"
          "\n"
          "Makes images from text prompts with a Stable Diffusion model (the seed project's\n"
          "UNet or an SD 1.x one) and writes them as PNG files that carry their settings in\n"
          "AUTOMATIC1111's \"parameters\" text (readable by its PNG Info, ComfyUI, civitai).\n"
          "\n"
          "model:\n"
          "  --model PATH          a diffusers pipeline folder (model_index.json, unet/,\n"
          "                        vae/, text_encoder/); a UNet folder (config.json +\n"
          "                        weights, e.g. a diffusers unet/ folder or a bundle with\n"
          "                        weights.safetensors); or a .safetensors file of UNet\n"
          "                        weights with its config.json beside it. Text encoder and\n"
          "                        VAE come from the model's text_encoder/ and vae/ folders.\n"
          "                        Also an sdw run directory or training checkpoint: its\n"
          "                        EMA weights, with the text encoder and VAE its\n"
          "                        config.ini names; a pixel-space run (vae = pixels)\n"
          "                        has no VAE and samples at its training image size\n"
          "  --vae PATH            use this VAE (diffusers vae folder, AutoencoderKL or LDM\n"
          "                        file) instead of the model's (not with a pixel-space\n"
          "                        run)\n"
          "  --text-encoder PATH   use this CLIP text encoder (transformers or diffusers\n"
          "                        folder, or file) instead of the model's\n"
          "  --ema, --no-ema       for checkpoints holding both: sample with the EMA weights\n"
          "                        (default when present) or the raw ones\n"
          "  --low-memory          keep one part (text encoder, UNet, VAE) in memory at a\n"
          "                        time, reopening each from its file when needed: SD 1.5\n"
          "                        at 512x512 in under 4 GB instead of about 5\n"
          "  --tokenizer hf|clip   prompt cleaning of Hugging Face's CLIPTokenizer (default,\n"
          "                        what the seed and SD 1.x use) or openai/CLIP's\n"
          "  --vocab PATH          the BPE vocabulary (default: the copy shipped with sdw)\n"
          "\n"
          "prompts:\n"
          "  --prompt TEXT         a prompt; repeat for several\n"
          "  --prompts-file FILE   one prompt per line (blank lines skipped; - reads stdin)\n"
          "  --negative TEXT       negative prompt: one is used for every prompt, or give\n"
          "                        one per prompt (in order); default none\n"
          "  -n, --batch N         images per prompt (default 1)\n"
          "\n"
          "sampling:\n"
          "  --steps N             sampling steps (default 30)\n"
          "  --cfg X               classifier-free guidance scale (default 7.5)\n"
          "  --sampler NAME        ddim (default), euler or dpmpp-2m\n"
          "  --karras              Karras sigmas (euler and dpmpp-2m)\n"
          "  --eta X               DDIM eta; 0 (default) is deterministic\n"
          "  --scheduler-flavor F  seed or diffusers DDIM; default seed for the seed's UNets,\n"
          "                        diffusers (SD 1.x settings) for SD 1.x UNets\n"
          "  --seed N              seed of the first image; image i gets N + i (default 42;\n"
          "                        -1 picks a random one)\n"
          "  --rng philox|torch-cpu  noise generator: philox (default, same on CPU and GPU)\n"
          "                        or torch-cpu (torch.randn on a CPU generator seeded with\n"
          "                        the image's seed: the noise of the seed's inference.py)\n"
          "  -W, --width N         image width in pixels, a multiple of 8 (default 512; an\n"
          "                        sdw run: its training images' width)\n"
          "  -H, --height N        image height in pixels, a multiple of 8 (default 512; an\n"
          "                        sdw run: its training images' height)\n"
          "\n"
          "output:\n"
          "  --out PATH            one image: the PNG file (default output.png); several: a\n"
          "                        folder (default outputs) receiving NNNN_<prompt>.png per\n"
          "                        image and grid.png (at most 4 columns). An existing folder\n"
          "                        or a path ending in / is always taken as a folder\n"
          "  --threads N           CPU threads (default: OMP_NUM_THREADS or all cores)\n"
          "  --help                this text\n"
          "\n"
          "Progress goes to standard error, the path of every file written to standard\n"
          "output. Ctrl-C stops between two steps; the image being made is not written.\n"
          "Exit status: 0 done, 1 error, 2 usage error, 130 interrupted.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sdw: sample: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " — see 'sdw sample --help'\n");
  va_end(ap);
  return 2;
}

/* --- options ---------------------------------------------------------------------------- */

typedef struct str_list {
  char **items;
  int count, capacity;
} str_list;

static bool list_push(str_list *l, const char *s, size_t len) {
  if (l->count == l->capacity) {
    int cap = l->capacity ? 2 * l->capacity : 8;
    char **items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) return false;
    l->items = items;
    l->capacity = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) return false;
  memcpy(copy, s, len);
  copy[len] = '\0';
  l->items[l->count++] = copy;
  return true;
}

static void list_free(str_list *l) {
  for (int i = 0; i < l->count; i++)
    free(l->items[i]);
  free(l->items);
  memset(l, 0, sizeof *l);
}

typedef struct options {
  const char *model, *vae, *text_encoder, *vocab, *out, *prompts_file;
  str_list prompts, negatives;
  int per_prompt;
  int ema; /* -1 auto */
  sdw_tokenizer_mode tokenizer;
  sdw_txt2img_settings settings;
  bool random_seed;
  bool low_memory; /* --low-memory */
  bool width_set, height_set;
  uint64_t seed;
  int threads;
} options;

/* "--name VALUE" or "--name=VALUE" (short names: "-W VALUE" or "-W512"). 1 on
 * a match with *value set, 0 for another option, -1 when the value is missing. */
static int take_value(int argc, char **argv, int *i, const char *name, const char *short_name,
                      const char **value) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) == 0 && (a[n] == '=' || a[n] == '\0')) {
    if (a[n] == '=') {
      *value = a + n + 1;
      return 1;
    }
  } else if (short_name && strncmp(a, short_name, 2) == 0) {
    if (a[2] != '\0') {
      *value = a + 2;
      return 1;
    }
  } else {
    return 0;
  }
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

static bool parse_int(const char *text, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) return false;
  *out = (int)v;
  return true;
}

static bool parse_double(const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !isfinite(v)) return false;
  *out = v;
  return true;
}

/* 0 .. 2^64-1, or -1 for a random seed. */
static bool parse_seed(const char *text, options *o) {
  if (strcmp(text, "-1") == 0) {
    o->random_seed = true;
    return true;
  }
  if (text[0] == '-' || text[0] == '+' || text[0] == '\0') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || *end) return false;
  o->seed = (uint64_t)v;
  o->random_seed = false;
  return true;
}

static int parse_args(int argc, char **argv, options *o, bool *help) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      *help = true;
      return 0;
    }
    if (strcmp(a, "--karras") == 0) {
      o->settings.karras = true;
      continue;
    }
    if (strcmp(a, "--ema") == 0 || strcmp(a, "--no-ema") == 0) {
      o->ema = a[2] == 'e';
      continue;
    }
    if (strcmp(a, "--low-memory") == 0) {
      o->low_memory = true;
      continue;
    }
    static const struct {
      const char *name, *short_name;
    } opts[] = {{"--model", NULL},
                {"--prompt", NULL},
                {"--prompts-file", NULL},
                {"--negative", NULL},
                {"--steps", NULL},
                {"--cfg", NULL},
                {"--sampler", NULL},
                {"--eta", NULL},
                {"--seed", NULL},
                {"--width", "-W"},
                {"--height", "-H"},
                {"--batch", "-n"},
                {"--out", NULL},
                {"--vae", NULL},
                {"--text-encoder", NULL},
                {"--rng", NULL},
                {"--scheduler-flavor", NULL},
                {"--tokenizer", NULL},
                {"--vocab", NULL},
                {"--threads", NULL}};
    int k = 0, matched = 0;
    const char *v = NULL;
    for (; k < (int)(sizeof opts / sizeof opts[0]); k++) {
      matched = take_value(argc, argv, &i, opts[k].name, opts[k].short_name, &v);
      if (matched) break;
    }
    if (matched < 0) return usage_error("option %s needs a value", a);
    if (!matched) return usage_error("unknown argument '%s'", a);
    const char *name = opts[k].name;
    sdw_txt2img_settings *s = &o->settings;
    if (strcmp(name, "--model") == 0) {
      o->model = v;
    } else if (strcmp(name, "--prompt") == 0) {
      if (!list_push(&o->prompts, v, strlen(v))) return usage_error("out of memory");
    } else if (strcmp(name, "--prompts-file") == 0) {
      o->prompts_file = v;
    } else if (strcmp(name, "--negative") == 0) {
      if (!list_push(&o->negatives, v, strlen(v))) return usage_error("out of memory");
    } else if (strcmp(name, "--steps") == 0) {
      if (!parse_int(v, 1, 1000, &s->steps))
        return usage_error("--steps takes a count from 1 to 1000, not '%s'", v);
    } else if (strcmp(name, "--cfg") == 0) {
      if (!parse_double(v, &s->cfg_scale) || s->cfg_scale < 0 || s->cfg_scale > 1000)
        return usage_error("--cfg takes a number from 0 to 1000, not '%s'", v);
    } else if (strcmp(name, "--sampler") == 0) {
      if (!sdw_sampler_kind_from_name(v, &s->sampler))
        return usage_error("--sampler takes ddim, euler or dpmpp-2m, not '%s'", v);
    } else if (strcmp(name, "--eta") == 0) {
      if (!parse_double(v, &s->eta) || s->eta < 0 || s->eta > 1000)
        return usage_error("--eta takes a number of 0 or more, not '%s'", v);
    } else if (strcmp(name, "--seed") == 0) {
      if (!parse_seed(v, o))
        return usage_error("--seed takes a whole number from 0 to 2^64-1 (or -1), not '%s'", v);
    } else if (strcmp(name, "--width") == 0 || strcmp(name, "--height") == 0) {
      int *dst = name[2] == 'w' ? &s->width : &s->height;
      if (!parse_int(v, 8, 8192, dst) || *dst % 8)
        return usage_error("%s takes a multiple of 8 from 8 to 8192 pixels, not '%s'", a, v);
      *(name[2] == 'w' ? &o->width_set : &o->height_set) = true;
    } else if (strcmp(name, "--batch") == 0) {
      if (!parse_int(v, 1, 10000, &o->per_prompt))
        return usage_error("%s takes a count from 1 to 10000, not '%s'", a, v);
    } else if (strcmp(name, "--out") == 0) {
      if (!*v) return usage_error("--out needs a path");
      o->out = v;
    } else if (strcmp(name, "--vae") == 0) {
      o->vae = v;
    } else if (strcmp(name, "--text-encoder") == 0) {
      o->text_encoder = v;
    } else if (strcmp(name, "--rng") == 0) {
      if (!sdw_txt2img_rng_from_name(v, &s->rng))
        return usage_error("--rng takes philox or torch-cpu, not '%s'", v);
    } else if (strcmp(name, "--scheduler-flavor") == 0) {
      if (!sdw_txt2img_flavor_from_name(v, &s->flavor) || s->flavor == SDW_TXT2IMG_FLAVOR_AUTO)
        return usage_error("--scheduler-flavor takes seed or diffusers, not '%s'", v);
    } else if (strcmp(name, "--tokenizer") == 0) {
      if (strcmp(v, "hf") == 0)
        o->tokenizer = SDW_TOKENIZER_HF;
      else if (strcmp(v, "clip") == 0)
        o->tokenizer = SDW_TOKENIZER_CLIP;
      else
        return usage_error("--tokenizer takes hf or clip, not '%s'", v);
    } else if (strcmp(name, "--vocab") == 0) {
      o->vocab = v;
    } else if (strcmp(name, "--threads") == 0) {
      if (!parse_int(v, 1, 4096, &o->threads))
        return usage_error("--threads takes a count of 1 or more, not '%s'", v);
    }
  }
  return 0;
}

/* Appends the prompts of a file (one per line, surrounding whitespace
 * stripped, blank lines skipped, as the seed's --batch file). */
static sdw_status read_prompts(const char *path, str_list *prompts) {
  char *data = NULL;
  size_t size = 0;
  if (strcmp(path, "-") == 0) {
    size_t cap = 0;
    for (;;) {
      if (size + 4096 + 1 > cap) {
        cap = cap ? 2 * cap : 65536;
        char *d = realloc(data, cap);
        if (!d) {
          free(data);
          return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory reading standard input");
        }
        data = d;
      }
      size_t got = fread(data + size, 1, cap - size - 1, stdin);
      size += got;
      if (got == 0) break;
    }
    if (ferror(stdin)) {
      free(data);
      return sdw_fail(SDW_ERR_IO, "cannot read the prompts from standard input");
    }
    if (data) data[size] = '\0';
  } else {
    sdw_status st = sdw_read_file(path, (void **)&data, &size);
    if (st != SDW_OK) {
      sdw_error_prefix("--prompts-file");
      return st;
    }
  }
  sdw_status st = SDW_OK;
  for (size_t pos = 0; pos < size && st == SDW_OK;) {
    size_t end = pos;
    while (end < size && data[end] != '\n')
      end++;
    size_t a = pos, b = end;
    while (a < b && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r' || data[a] == '\v' ||
                     data[a] == '\f'))
      a++;
    while (b > a && (data[b - 1] == ' ' || data[b - 1] == '\t' || data[b - 1] == '\r' ||
                     data[b - 1] == '\v' || data[b - 1] == '\f'))
      b--;
    if (b > a && !list_push(prompts, data + a, b - a))
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    pos = end + 1;
  }
  free(data);
  return st;
}

/* --- file names --------------------------------------------------------------------------- */

/* The seed's inference.py: the prompt's first 50 characters, every one that
 * is not alphanumeric, a space, '_' or '-' replaced by '_', then surrounding
 * whitespace stripped. Characters are code points (invalid UTF-8 bytes count
 * as one each and become '_'); "alphanumeric" is Unicode's letters and
 * numbers. */
static void safe_name(const char *prompt, char *out, size_t size) {
  const unsigned char *p = (const unsigned char *)prompt;
  size_t o = 0;
  for (int chars = 0; *p && chars < 50; chars++) {
    uint32_t cp = *p;
    int len = 1;
    if (cp >= 0xC2 && cp < 0xE0 && (p[1] & 0xC0) == 0x80) {
      cp = ((cp & 0x1F) << 6) | (p[1] & 0x3F);
      len = 2;
    } else if (cp >= 0xE0 && cp < 0xF0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
      cp = ((cp & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
      len = 3;
    } else if (cp >= 0xF0 && cp < 0xF5 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 &&
               (p[3] & 0xC0) == 0x80) {
      cp = ((cp & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
           (p[3] & 0x3F);
      len = 4;
    } else if (cp >= 0x80) {
      cp = 0xFFFD; /* a stray byte: not alphanumeric */
    }
    bool keep = cp == ' ' || cp == '_' || cp == '-' ||
                (cp != 0xFFFD && (sdw_uc_flags(cp) & (SDW_UC_L | SDW_UC_N)) != 0);
    if (cp < 0x80) keep = keep && cp >= 0x20; /* control characters are never kept */
    if (keep) {
      if (o + (size_t)len < size) {
        memcpy(out + o, p, (size_t)len);
        o += (size_t)len;
      }
    } else if (o + 1 < size) {
      out[o++] = '_';
    }
    p += len;
  }
  out[o] = '\0';
  /* strip: the only whitespace left is ' ' */
  size_t a = 0;
  while (out[a] == ' ')
    a++;
  while (o > a && out[o - 1] == ' ')
    o--;
  memmove(out, out + a, o - a);
  out[o - a] = '\0';
}

static bool is_directory(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* --- progress and Ctrl-C ------------------------------------------------------------------ */

static atomic_int interrupted;

static void on_sigint(int sig) {
  (void)sig;
  atomic_store(&interrupted, 1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct progress {
  bool tty;
  int image, images; /* 1-based */
  double start;      /* when the current image's sampling started */
  bool drawn;        /* a \r line is on screen */
} progress;

static void progress_clear(progress *p) {
  if (p->tty && p->drawn) {
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
  }
  p->drawn = false;
}

static void on_step(void *user, int step, int steps, double timestep, const sdw_tensor *x,
                    const sdw_tensor *pred_x0) {
  (void)timestep;
  (void)x;
  (void)pred_x0;
  progress *p = user;
  double elapsed = now_s() - p->start;
  double rate = elapsed > 0 ? step / elapsed : 0;
  if (p->tty) {
    enum { BAR = 24 };
    char bar[BAR + 1];
    int filled = step * BAR / steps;
    for (int i = 0; i < BAR; i++)
      bar[i] = i < filled ? '#' : '.';
    bar[BAR] = '\0';
    double eta = rate > 0 ? (steps - step) / rate : 0;
    fprintf(stderr, "\rimage %d/%d [%s] %d/%d  %.2f it/s  %.0fs left\033[K", p->image, p->images,
            bar, step, steps, rate, eta);
    fflush(stderr);
    p->drawn = true;
    return;
  }
  int every = steps >= 10 ? steps / 10 : 1;
  if (step == 1 || step == steps || step % every == 0) {
    fprintf(stderr, "sdw: sample: image %d/%d step %d/%d (%.2f it/s)\n", p->image, p->images, step,
            steps, rate);
    fflush(stderr);
  }
}

/* --- the run ------------------------------------------------------------------------------ */

typedef struct run_state {
  sdw_ctx *ctx;
  sdw_txt2img *pipe;   /* owned, or demo's */
  sdw_demo_model demo; /* a pixel-space run (demo_open): it owns pipe and ctx */
  bool demo_open;
  uint8_t *rgb;  /* one image */
  uint8_t *grid; /* the grid, when one is made */
  char *infotext;
  size_t infotext_size;
  sdw_txt2img_job *jobs; /* [images] */
  char *path;            /* the file being written */
} run_state;

static void run_state_free(run_state *s) {
  if (s->demo_open) {
    sdw_demo_model_close(&s->demo);
  } else {
    sdw_txt2img_free(s->pipe);
    sdw_ctx_destroy(s->ctx);
  }
  free(s->rgb);
  free(s->grid);
  free(s->infotext);
  free(s->jobs);
  free(s->path);
}

static sdw_status write_png(const char *path, const uint8_t *rgb, int width, int height,
                            const char *infotext) {
  const sdw_png_text texts[] = {{"parameters", infotext}, {"Software", "sdw " SDW_VERSION}};
  return sdw_png_write(path, rgb, width, height, 3, texts, 2);
}

static sdw_status format_infotext(run_state *s, const sdw_txt2img_settings *set,
                                  const sdw_txt2img_job *job) {
  size_t n = sdw_txt2img_infotext(s->pipe, set, job, s->infotext, s->infotext_size);
  if (n + 1 > s->infotext_size) {
    char *t = realloc(s->infotext, n + 1);
    if (!t) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    s->infotext = t;
    s->infotext_size = n + 1;
    sdw_txt2img_infotext(s->pipe, set, job, s->infotext, s->infotext_size);
  }
  return SDW_OK;
}

/* Everything after option parsing; returns the exit status. */
static int run(options *o, run_state *s) {
  sdw_txt2img_settings *set = &o->settings;
  if (!o->model) return usage_error("--model is required");
  if (o->prompts_file && read_prompts(o->prompts_file, &o->prompts) != SDW_OK) {
    sdw_cli_report_error("sample");
    return 1;
  }
  if (o->prompts.count == 0) {
    if (!o->prompts_file) return usage_error("give --prompt TEXT or --prompts-file FILE");
    fprintf(stderr, "sdw: sample: %s holds no prompts — put one prompt per line\n",
            o->prompts_file);
    return 1;
  }
  if (o->negatives.count > 1 && o->negatives.count != o->prompts.count)
    return usage_error("%d negative prompts for %d prompts: give one (used for all) or one "
                       "per prompt",
                       o->negatives.count, o->prompts.count);
  if ((int64_t)o->prompts.count * o->per_prompt > 100000)
    return usage_error("%lld images are too many for one run (at most 100000)",
                       (long long)o->prompts.count * o->per_prompt);
  const int total = o->prompts.count * o->per_prompt;

  /* where the images go */
  const char *out = o->out ? o->out : total == 1 ? "output.png" : "outputs";
  const size_t out_len = strlen(out);
  const bool to_dir = total > 1 || out[out_len - 1] == '/' || is_directory(out);
  if (to_dir && !is_directory(out) && out_len > 4 && strcasecmp(out + out_len - 4, ".png") == 0)
    return usage_error("--out %s names one file but %d images will be made; give a folder", out,
                       total);
  const char *sep = out[out_len - 1] == '/' ? "" : "/";

  /* the seeds: image j gets seed + j */
  if (o->random_seed) {
    uint32_t r = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
      if (fread(&r, sizeof r, 1, f) != 1) r ^= (uint32_t)clock();
      fclose(f);
    }
    o->seed = r; /* A1111's random seeds are 32-bit too */
  }
  s->jobs = calloc((size_t)total, sizeof *s->jobs);
  s->path = malloc(out_len + 300);
  if (!s->jobs || !s->path) {
    fprintf(stderr, "sdw: sample: out of memory\n");
    return 1;
  }
  for (int p = 0, j = 0; p < o->prompts.count; p++)
    for (int k = 0; k < o->per_prompt; k++, j++) {
      s->jobs[j].prompt = o->prompts.items[p];
      s->jobs[j].negative = o->negatives.count == 0   ? ""
                            : o->negatives.count == 1 ? o->negatives.items[0]
                                                      : o->negatives.items[p];
      s->jobs[j].seed = o->seed + (uint64_t)j;
    }

  /* threads, then the backend and the model */
  if (o->threads > 0) {
    omp_set_num_threads(o->threads);
    openblas_set_num_threads(o->threads);
  }
  /* an sdw run samples at its training images' size unless told; a
   * pixel-space one has no VAE (demo_model.h) */
  sdw_demo_model_info info;
  const bool run = sdw_demo_model_probe(o->model, &info) == SDW_OK;
  const bool pixels = run && info.pixels;
  sdw_clear_error();
  if (pixels && o->vae)
    return usage_error("--vae: %s is a pixel-space model (its config says vae = pixels): it "
                       "samples without a VAE",
                       o->model);
  if (run && !pixels && info.width && (!o->width_set || !o->height_set)) {
    if (!o->width_set) set->width = info.width;
    if (!o->height_set) set->height = info.height;
  }
  if (pixels && (!o->width_set || !o->height_set)) {
    if (!info.width) {
      fprintf(stderr,
              "sdw: sample: %s: cannot read the training images' size from its train_data "
              "store %s — give -W and -H\n",
              o->model, info.train_data[0] ? info.train_data : "(none)");
      return 1;
    }
    if (!o->width_set) set->width = info.width;
    if (!o->height_set) set->height = info.height;
  }
  sdw_status st = SDW_OK;
  if (pixels) {
    const sdw_demo_model_options dm = {.text_encoder = o->text_encoder,
                                       .vocab = o->vocab,
                                       .tokenizer = o->tokenizer,
                                       .ema = o->ema,
                                       .model_hash = true};
    st = sdw_demo_model_open_with(o->model, &dm, &s->demo);
    s->demo_open = true; /* closed also on failure */
    s->pipe = s->demo.pipe;
    s->ctx = s->demo.ctx;
  } else {
    st = sdw_ctx_create(sdw_backend_cpu(), 0, &s->ctx);
  }
  if (st == SDW_OK && !pixels) {
    sdw_txt2img_source src = {.model = o->model,
                              .vae = o->vae,
                              .text_encoder = o->text_encoder,
                              .vocab = o->vocab,
                              .tokenizer = o->tokenizer,
                              .ema = o->ema,
                              .model_hash = true,
                              .low_memory = o->low_memory};
    st = sdw_txt2img_open(s->ctx, &src, &s->pipe);
  }
  if (st != SDW_OK) {
    sdw_cli_report_error("sample");
    return 1;
  }
  if (sdw_txt2img_check(s->pipe, set) != SDW_OK) {
    fprintf(stderr, "sdw: sample: %s\n", sdw_last_error());
    return 2;
  }
  if (to_dir && sdw_mkdir_p(out) != SDW_OK) {
    sdw_cli_report_error("sample: --out");
    return 1;
  }
  char what[256], sampler[64];
  sdw_txt2img_describe(s->pipe, what, sizeof what);
  if (set->sampler == SDW_SAMPLER_DDIM)
    snprintf(sampler, sizeof sampler, "ddim (%s)",
             sdw_txt2img_flavor_name(sdw_txt2img_effective_flavor(s->pipe, set)));
  else
    snprintf(sampler, sizeof sampler, "%s%s", sdw_sampler_kind_name(set->sampler),
             set->karras ? " (Karras)" : "");
  fprintf(stderr, "sdw: sample: %s: %s; %s, %d steps, CFG %g, %dx%d, %s noise, seed %llu\n",
          o->model, what, sampler, set->steps, set->cfg_scale, set->width, set->height,
          sdw_txt2img_rng_name(set->rng), (unsigned long long)o->seed);
  /* CLIP reads 75 tokens; say so when a prompt is longer (A1111 would chunk it) */
  for (int i = 0; i < o->prompts.count + o->negatives.count; i++) {
    const bool neg = i >= o->prompts.count;
    const char *text = neg ? o->negatives.items[i - o->prompts.count] : o->prompts.items[i];
    size_t tokens = 0;
    if (sdw_txt2img_token_count(s->pipe, text, &tokens) == SDW_OK && tokens > 75)
      fprintf(stderr, "sdw: sample: warning: %s %d is %zu tokens long; CLIP reads the first 75\n",
              neg ? "negative prompt" : "prompt", 1 + (neg ? i - o->prompts.count : i), tokens);
  }

  const int W = set->width, H = set->height;
  const size_t image_bytes = (size_t)W * (size_t)H * 3;
  const int cols = total < 4 ? total : 4, rows = (total + cols - 1) / cols;
  const bool make_grid = to_dir && total > 1;
  s->rgb = malloc(image_bytes);
  if (make_grid) s->grid = calloc((size_t)rows * (size_t)cols, image_bytes);
  if (!s->rgb || (make_grid && !s->grid)) {
    fprintf(stderr, "sdw: sample: out of memory for the images\n");
    return 1;
  }

  struct sigaction sa, old_sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C ends the process at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_sa);

  progress prog = {.tty = isatty(STDERR_FILENO) == 1, .images = total};
  sdw_txt2img_hooks hooks = {.progress = on_step, .progress_user = &prog, .cancel = &interrupted};
  int written = 0;
  for (int j = 0; j < total && st == SDW_OK; j++) {
    prog.image = j + 1;
    prog.start = now_s();
    st = sdw_txt2img_generate(s->pipe, set, &s->jobs[j], 1, &hooks, s->rgb);
    progress_clear(&prog);
    if (st == SDW_OK && atomic_load(&interrupted))
      st = sdw_fail(SDW_ERR_INTERRUPTED, "interrupted");
    if (st != SDW_OK) break;
    if (to_dir) {
      char safe[256];
      safe_name(s->jobs[j].prompt, safe, sizeof safe);
      snprintf(s->path, out_len + 300, "%s%s%04d_%s.png", out, sep, j, safe);
    } else {
      snprintf(s->path, out_len + 300, "%s", out);
    }
    st = format_infotext(s, set, &s->jobs[j]);
    if (st == SDW_OK) st = write_png(s->path, s->rgb, W, H, s->infotext);
    if (st != SDW_OK) break;
    printf("%s\n", s->path);
    fflush(stdout);
    written++;
    if (make_grid) {
      const int gx = j % cols, gy = j / cols;
      const size_t grid_row = (size_t)cols * (size_t)W * 3;
      for (int y = 0; y < H; y++)
        memcpy(s->grid + ((size_t)gy * H + (size_t)y) * grid_row + (size_t)gx * W * 3,
               s->rgb + (size_t)y * W * 3, (size_t)W * 3);
    }
  }
  if (st == SDW_OK && make_grid) {
    /* the grid carries the first image's settings, as AUTOMATIC1111's grids do */
    snprintf(s->path, out_len + 300, "%s%sgrid.png", out, sep);
    st = format_infotext(s, set, &s->jobs[0]);
    if (st == SDW_OK) st = write_png(s->path, s->grid, cols * W, rows * H, s->infotext);
    if (st == SDW_OK) printf("%s\n", s->path);
  }
  sigaction(SIGINT, &old_sa, NULL);
  if (st == SDW_ERR_INTERRUPTED) {
    fprintf(stderr, "sdw: sample: interrupted — %d of %d images were written\n", written, total);
    return 130;
  }
  if (st != SDW_OK) {
    sdw_cli_report_error("sample");
    return 1;
  }
  return 0;
}

int sdw_cmd_sample(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.settings = sdw_txt2img_settings_default();
  o.per_prompt = 1;
  o.ema = -1;
  o.seed = 42;
  o.tokenizer = SDW_TOKENIZER_HF;
  bool help = false;
  int code = parse_args(argc, argv, &o, &help);
  if (code == 0 && help) print_help(stdout);
  run_state s;
  memset(&s, 0, sizeof s);
  if (code == 0 && !help) code = run(&o, &s);
  run_state_free(&s);
  list_free(&o.prompts);
  list_free(&o.negatives);
  return code;
}
