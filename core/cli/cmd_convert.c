/* `sdw convert IN OUT`: seed UNet weights from one layout to another.
 *
 * IN is a seed training checkpoint (.pt, read by the restricted unpickler:
 * nothing in it is executed) or anything the weight loaders take (a
 * .safetensors file, an LDM single file, a diffusers unet/ or pipeline
 * folder, a golden-style bundle). OUT is a safetensors file with the seed's
 * native names (default), an LDM-style single file ("model.diffusion_model."
 * + native names), or a diffusers-style folder (unet/config.json with
 * "_class_name": "SeedUNetModel" and the constructor arguments, and
 * unet/diffusion_pytorch_model.safetensors). Outputs are written atomically:
 * after an error nothing is left behind (a diffusers folder may be left
 * without its files). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/safetensors.h"
#include "core/base/tensor.h"
#include "core/cli/cli.h"
#include "core/model/seed_checkpoint.h"
#include "core/model/unet.h"
#include "core/model/weights.h"

static void print_help(FILE *out) {
  fprintf(out, "usage: sdw convert IN OUT [--format safetensors|diffusers|ldm] [--ema|--no-ema]\n"
               "                   [--dtype fp32|fp16|bf16] [--config CONFIG.json] [--heads N]\n"
               "\n"
               "Converts the UNet weights of a seed checkpoint (the .pt files the seed\n"
               "project's train.py writes; read without executing anything in them) or of\n"
               "any file or folder the weight loaders take (.safetensors, an LDM single\n"
               "file, a diffusers unet/ or pipeline folder) into another layout.\n"
               "\n"
               "options:\n"
               "  --format F        safetensors (default): OUT is one file with the seed's\n"
               "                    parameter names (downs.0.conv1.weight, ...);\n"
               "                    ldm: OUT is one file, names prefixed model.diffusion_model.;\n"
               "                    diffusers: OUT is a folder receiving unet/config.json\n"
               "                    (\"_class_name\": \"SeedUNetModel\") and\n"
               "                    unet/diffusion_pytorch_model.safetensors\n"
               "  --ema             take the EMA weights (ema_state_dict.shadow, what the\n"
               "                    seed's inference uses); an error when there are none\n"
               "  --no-ema          take the trained weights (unet_state_dict, or a legacy\n"
               "                    model_state_dict / state_dict / bare state dict)\n"
               "                    (default for a .pt: the EMA weights when present)\n"
               "  --dtype T         fp32 (default), fp16 or bf16 (rounded to nearest even)\n"
               "  --config FILE     the UNet's config.json for --format diffusers (checked\n"
               "                    against the weights); default: the one beside IN, else\n"
               "                    one read off the weights' shapes\n"
               "  --heads N         attention heads for a config read off the weights (they\n"
               "                    are not stored in them; default 8, the seed's)\n"
               "  --help            print this text\n"
               "\n"
               "Outputs are written atomically. Exit status: 0 on success, 1 when a file\n"
               "cannot be read or written, 2 for a usage error.\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: convert: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw convert --help' lists the options\n");
  return 2;
}

typedef enum out_format { FORMAT_SAFETENSORS, FORMAT_DIFFUSERS, FORMAT_LDM } out_format;

/* One tensor to write, from whichever source. */
typedef struct item {
  const char *name; /* native (not owned) */
  int ndim;
  const int64_t *shape;
  int64_t numel;
  const sdw_seed_tensor *pt;          /* from a .pt, or */
  const sdw_safetensors_entry *entry; /* from a safetensors file */
} item;

typedef struct job {
  const char *in, *out;
  out_format format;
  sdw_seed_weights which;
  bool which_given;
  sdw_dtype dtype;
  const char *config;
  int heads;
  bool heads_given;
  /* the source */
  sdw_seed_checkpoint *ckpt;
  const sdw_seed_state *state;
  sdw_weights *weights;
  item *items;
  int count;
  const char *source; /* for the summary */
} job;

static bool is_pt(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return false;
  size_t n = strlen(path);
  static const char *const ext[] = {".pt", ".pth", ".ckpt", ".bin"};
  for (int i = 0; i < 4; i++) {
    size_t m = strlen(ext[i]);
    if (n >= m && strcmp(path + n - m, ext[i]) == 0) return true;
  }
  /* any name: a ZIP or a legacy pickle is a PyTorch file */
  FILE *f = fopen(path, "rb");
  unsigned char head[4] = {0};
  size_t got = f ? fread(head, 1, 4, f) : 0;
  if (f) fclose(f);
  return got == 4 && ((head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) ||
                      (head[0] == 0x80 && head[1] <= 5));
}

static const char *const ldm_prefix = "model.diffusion_model.";

static sdw_status gather_pt(job *j) {
  SDW_TRY(sdw_seed_checkpoint_open(j->in, &j->ckpt));
  SDW_TRY(sdw_seed_checkpoint_weights(j->ckpt, j->which, &j->state));
  j->items = calloc((size_t)j->state->count, sizeof *j->items);
  if (!j->items) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < j->state->count; i++) {
    const sdw_seed_tensor *t = &j->state->items[i];
    j->items[j->count++] =
        (item){t->name, t->tensor->ndim, t->tensor->shape, t->tensor->numel, t, NULL};
  }
  j->source = j->state->source;
  return SDW_OK;
}

static sdw_status gather_weights(job *j) {
  SDW_TRY(sdw_weights_open(j->in, "unet", &j->weights));
  size_t total = 0;
  bool ldm = false;
  for (int f = 0; f < sdw_weights_file_count(j->weights); f++) {
    const sdw_safetensors *st = sdw_weights_file(j->weights, f);
    total += sdw_safetensors_count(st);
    for (size_t i = 0; i < sdw_safetensors_count(st); i++)
      ldm = ldm || strncmp(sdw_safetensors_at(st, i)->name, ldm_prefix, strlen(ldm_prefix)) == 0;
  }
  j->items = calloc(total ? total : 1, sizeof *j->items);
  if (!j->items) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  /* an LDM single file: only its UNet (model.diffusion_model.*) */
  for (int f = 0; f < sdw_weights_file_count(j->weights); f++) {
    const sdw_safetensors *st = sdw_weights_file(j->weights, f);
    for (size_t i = 0; i < sdw_safetensors_count(st); i++) {
      const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
      const char *name = e->name;
      for (const char *q = name; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
          return sdw_fail(SDW_ERR_FORMAT,
                          "%s: a tensor name has control characters, which no parameter name has",
                          sdw_safetensors_name(st));
      if (ldm) {
        if (strncmp(name, ldm_prefix, strlen(ldm_prefix)) != 0) continue;
        name += strlen(ldm_prefix);
      }
      if (e->dtype != SDW_F32 && e->dtype != SDW_F16 && e->dtype != SDW_BF16 && e->dtype != SDW_F64)
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64",
                        sdw_safetensors_name(st), e->name, sdw_dtype_name(e->dtype));
      j->items[j->count++] = (item){name, e->ndim, e->shape, e->numel, NULL, e};
    }
  }
  if (j->count == 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: holds no tensors", sdw_weights_name(j->weights));
  j->source = ldm ? "model.diffusion_model.*" : "all tensors";
  return SDW_OK;
}

/* The item's values as f32 into dst[numel]. */
static sdw_status read_f32(job *j, const item *it, float *dst) {
  if (it->pt) return sdw_seed_tensor_read_f32(j->ckpt, it->pt, dst, (size_t)it->numel);
  const sdw_safetensors_entry *e = it->entry;
  const unsigned char *src = e->data;
  for (int64_t i = 0; i < it->numel; i++) {
    if (e->dtype == SDW_F32) {
      memcpy(&dst[i], src + 4 * i, 4);
    } else if (e->dtype == SDW_F64) {
      double v;
      memcpy(&v, src + 8 * i, 8);
      dst[i] = (float)v;
    } else {
      uint16_t h;
      memcpy(&h, src + 2 * i, 2);
      dst[i] = e->dtype == SDW_F16 ? sdw_f16_to_f32(h) : sdw_bf16_to_f32(h);
    }
  }
  return SDW_OK;
}

static void human_bytes(double b, char *buf, size_t size) {
  static const char *const units[] = {"bytes", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4)
    b /= 1000, u++;
  snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

/* Converts every item into the output dtype and writes one safetensors file
 * (names prefixed with prefix). */
static sdw_status write_file(job *j, const char *path, const char *prefix) {
  const size_t es = sdw_dtype_size(j->dtype);
  double total = 0;
  size_t largest = 0;
  for (int i = 0; i < j->count; i++) {
    total += (double)j->items[i].numel * (double)es;
    if ((size_t)j->items[i].numel > largest) largest = (size_t)j->items[i].numel;
  }
  bool progress = total >= 256e6 && isatty(STDERR_FILENO);
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  void **buffers = calloc((size_t)j->count, sizeof *buffers);
  float *stage = j->dtype == SDW_F32 ? NULL : malloc((largest ? largest : 1) * sizeof *stage);
  sdw_status st = SDW_OK;
  if (!buffers || (j->dtype != SDW_F32 && !stage))
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory converting %s", j->in);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "format", "pt");
  double done = 0;
  char name[1024];
  for (int i = 0; st == SDW_OK && i < j->count; i++) {
    const item *it = &j->items[i];
    size_t n = (size_t)it->numel;
    buffers[i] = malloc(n ? n * es : 1);
    if (!buffers[i]) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory converting '%s' (%zu values)", it->name,
                    n);
      break;
    }
    float *f32 = j->dtype == SDW_F32 ? buffers[i] : stage;
    st = read_f32(j, it, f32);
    if (st != SDW_OK) break;
    if (j->dtype != SDW_F32) {
      uint16_t *h = buffers[i];
      for (size_t k = 0; k < n; k++)
        h[k] = j->dtype == SDW_F16 ? sdw_f32_to_f16(f32[k]) : sdw_f32_to_bf16(f32[k]);
    }
    int len = snprintf(name, sizeof name, "%s%s", prefix, it->name);
    if (len < 0 || (size_t)len >= sizeof name) {
      st = sdw_fail(SDW_ERR_FORMAT, "%s: a tensor name is too long", j->in);
      break;
    }
    st = sdw_safetensors_writer_add(w, name, j->dtype, it->ndim, it->shape, buffers[i]);
    done += (double)n * (double)es;
    if (progress && st == SDW_OK) {
      char a[32], b[32];
      human_bytes(done, a, sizeof a);
      human_bytes(total, b, sizeof b);
      fprintf(stderr, "\rsdw convert: reading %d/%d tensors (%s of %s)", i + 1, j->count, a, b);
    }
  }
  if (progress) fprintf(stderr, st == SDW_OK ? "; writing %s\n" : "\n", path);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  for (int i = 0; buffers && i < j->count; i++)
    free(buffers[i]);
  free(buffers);
  free(stage);
  sdw_safetensors_writer_destroy(w);
  return st;
}

/* The config.json text for --format diffusers, checked against the tensors. */
static sdw_status diffusers_config(job *j, char **text, size_t *len) {
  sdw_seed_shape *shapes = calloc((size_t)j->count, sizeof *shapes);
  if (!shapes) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < j->count; i++)
    shapes[i] = (sdw_seed_shape){j->items[i].name, j->items[i].ndim, j->items[i].shape};
  const char *given = j->config;
  if (!given && j->weights) given = sdw_weights_config_path(j->weights);
  sdw_status st = SDW_OK;
  void *data = NULL;
  size_t size = 0;
  if (given) {
    sdw_unet_config cfg;
    st = sdw_read_file(given, &data, &size);
    if (st == SDW_OK) st = sdw_unet_config_parse(data, size, given, &cfg);
    if (st == SDW_OK && cfg.topology != SDW_UNET_SEED)
      st = sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: a diffusers UNet2DConditionModel configuration; sdw convert writes seed "
                    "UNets (\"_class_name\": \"SeedUNetModel\")",
                    given);
    if (st == SDW_OK) st = sdw_seed_match_unet(shapes, j->count, &cfg, j->in);
    if (st == SDW_OK) {
      *text = data, *len = size;
      data = NULL;
    }
  } else {
    sdw_seed_unet_args args;
    sdw_unet_config cfg;
    char buf[2048];
    st = sdw_seed_infer_unet_args(shapes, j->count, j->heads, j->in, &args);
    int n = st == SDW_OK ? sdw_seed_unet_args_json(&args, buf, sizeof buf) : 0;
    if (st == SDW_OK && n < 0) st = sdw_fail(SDW_ERR_INTERNAL, "config.json does not fit");
    if (st == SDW_OK) st = sdw_unet_config_parse(buf, (size_t)n, "the inferred config", &cfg);
    if (st == SDW_OK) st = sdw_seed_match_unet(shapes, j->count, &cfg, j->in);
    if (st == SDW_OK && !j->heads_given)
      fprintf(stderr,
              "sdw: convert: note: the weights do not store the number of attention heads; "
              "config.json says %d (the seed's), give --heads or --config for another\n",
              j->heads);
    if (st == SDW_OK) {
      *text = strdup(buf);
      *len = (size_t)n;
      if (!*text) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    }
  }
  free(data);
  free(shapes);
  return st;
}

static sdw_status convert(job *j) {
  SDW_TRY(is_pt(j->in) ? gather_pt(j) : gather_weights(j));
  if (j->which_given && !j->ckpt)
    fprintf(stderr, "sdw: convert: note: %s is not a .pt checkpoint; --ema/--no-ema ignored\n",
            j->in);
  if (j->format == FORMAT_SAFETENSORS) return write_file(j, j->out, "");
  if (j->format == FORMAT_LDM) return write_file(j, j->out, ldm_prefix);
  char *config = NULL;
  size_t config_len = 0;
  SDW_TRY(diffusers_config(j, &config, &config_len));
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/unet", j->out);
  sdw_status st = sdw_mkdir_p(dir);
  if (st == SDW_OK) {
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    st = write_file(j, path, "");
  }
  if (st == SDW_OK) {
    snprintf(path, sizeof path, "%s/config.json", dir);
    st = sdw_atomic_write(path, config, config_len);
  }
  free(config);
  return st;
}

int sdw_cmd_convert(int argc, char **argv) {
  job j;
  memset(&j, 0, sizeof j);
  j.dtype = SDW_F32;
  j.heads = 8;
  const char *pos[2] = {NULL, NULL};
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_help(stdout);
      return 0;
    }
    if (strcmp(a, "--ema") == 0 || strcmp(a, "--no-ema") == 0) {
      j.which = a[2] == 'e' ? SDW_SEED_WEIGHTS_EMA : SDW_SEED_WEIGHTS_MODEL;
      j.which_given = true;
      continue;
    }
    static const char *const valued[] = {"--format", "--dtype", "--config", "--heads"};
    const char *value = NULL;
    int which = -1;
    for (int k = 0; k < 4 && which < 0; k++) {
      size_t n = strlen(valued[k]);
      if (strcmp(a, valued[k]) == 0) {
        if (i + 1 >= argc) return usage_error("%s needs a value", a);
        which = k, value = argv[++i];
      } else if (strncmp(a, valued[k], n) == 0 && a[n] == '=') {
        which = k, value = a + n + 1;
      }
    }
    if (which == 0) {
      if (strcmp(value, "safetensors") == 0)
        j.format = FORMAT_SAFETENSORS;
      else if (strcmp(value, "diffusers") == 0)
        j.format = FORMAT_DIFFUSERS;
      else if (strcmp(value, "ldm") == 0)
        j.format = FORMAT_LDM;
      else
        return usage_error("--format is safetensors, diffusers or ldm, not '%s'", value);
    } else if (which == 1) {
      if (strcmp(value, "fp32") == 0 || strcmp(value, "f32") == 0)
        j.dtype = SDW_F32;
      else if (strcmp(value, "fp16") == 0 || strcmp(value, "f16") == 0)
        j.dtype = SDW_F16;
      else if (strcmp(value, "bf16") == 0)
        j.dtype = SDW_BF16;
      else
        return usage_error("--dtype is fp32, fp16 or bf16, not '%s'", value);
    } else if (which == 2) {
      j.config = value;
    } else if (which == 3) {
      char *end;
      long h = strtol(value, &end, 10);
      if (*value == '\0' || *end != '\0' || h < 1 || h > 4096)
        return usage_error("--heads takes a positive number, not '%s'", value);
      j.heads = (int)h;
      j.heads_given = true;
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error("unknown option '%s'", a);
    } else if (npos < 2) {
      pos[npos++] = a;
    } else {
      return usage_error("unexpected argument '%s' (IN and OUT are already given)", a);
    }
  }
  if (npos < 2) return usage_error("%s", "IN and OUT are required");
  j.in = pos[0];
  j.out = pos[1];
  if (j.config && j.format != FORMAT_DIFFUSERS)
    return usage_error("%s", "--config is for --format diffusers");
  sdw_status st = convert(&j);
  if (st == SDW_OK) {
    char size[32];
    double bytes = 0;
    for (int i = 0; i < j.count; i++)
      bytes += (double)j.items[i].numel * (double)sdw_dtype_size(j.dtype);
    human_bytes(bytes, size, sizeof size);
    fprintf(stderr, "sdw convert: wrote %s: %d tensors (%s), %s, %s\n", j.out, j.count, j.source,
            sdw_dtype_name(j.dtype), size);
  } else {
    sdw_cli_report_error("convert");
  }
  free(j.items);
  sdw_seed_checkpoint_close(j.ckpt);
  sdw_weights_close(j.weights);
  return st == SDW_OK ? 0 : 1;
}
