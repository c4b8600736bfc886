/* The download/encode stages' per-image work on one core: decode a 1024x768
 * JPEG (q90, 4:2:0, as photos on the web are), resize to 512 center_crop as
 * img2dataset does (INTER_AREA: 1024x768 -> 683x512 -> crop), encode JPEG
 * q95, and the whole chain. Rows are ms per image; GB/s counts the RGB
 * pixels produced (decode, resize) or consumed (encode). The chain's
 * images/s is printed on its own line, also for the streamed form the
 * download stage runs (sdw_image_decode_resize: rows decoded straight into
 * the resize). Also a Lanczos upscale (300x200 ->
 * 768x512) and the cubic one the seed's encode stage uses. Everything runs
 * single-threaded, as the download stage runs one image per worker, and is
 * timed in thread CPU time (best of the repetitions). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"
#include "pipeline/image.h"

static void bench_ok(sdw_status st) {
  if (st != SDW_OK) {
    fprintf(stderr, "bench_image: %s\n", sdw_last_error());
    exit(1);
  }
}

/* sdw_bench_time's best-of loop on this thread's CPU time: these rows are
 * single-threaded and the machine is shared, where wall time mostly
 * measures the other processes (on an idle machine the two agree). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double image_time(void (*fn)(void *arg), void *arg, int min_reps, double min_seconds) {
  fn(arg); /* warm-up */
  double best = 1e30, start = sdw_bench_now();
  for (int rep = 0; rep < min_reps || sdw_bench_now() - start < min_seconds; rep++) {
    double t0 = cpu_now();
    fn(arg);
    double dt = cpu_now() - t0;
    if (dt < best) best = dt;
  }
  return best;
}

/* Two variants timed alternately (the same background load for both). */
static void image_time2(void (*f1)(void *), void (*f2)(void *), void *arg, double min_seconds,
                        double *t1, double *t2) {
  f1(arg), f2(arg); /* warm-up */
  *t1 = *t2 = 1e30;
  double start = sdw_bench_now();
  for (int rep = 0; rep < 5 || sdw_bench_now() - start < min_seconds; rep++) {
    double t0 = cpu_now();
    f1(arg);
    double t = cpu_now();
    f2(arg);
    double t3 = cpu_now();
    if (t - t0 < *t1) *t1 = t - t0;
    if (t3 - t < *t2) *t2 = t3 - t;
  }
}

/* A photo-like test image: smooth shading, texture and edges. */
static void make_image(sdw_image *img, int w, int h) {
  bench_ok(sdw_image_alloc(w, h, img));
  uint32_t seed = 12345;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        seed = seed * 1103515245u + 12345u;
        double v = 120 + 60 * sin(x / (17.0 + 5 * c)) * cos(y / (23.0 + c)) + 40.0 * x / w +
                   ((x / 64 + y / 48) % 2 ? 25 : -25) + (double)((seed >> 16) % 13) - 6;
        img->pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
}

typedef struct image_bench {
  const uint8_t *jpg;
  size_t njpg;
  sdw_image src, resized;
  int up_w, up_h, cubic;
} image_bench;

static void run_decode(void *p) {
  image_bench *b = p;
  sdw_image img;
  bench_ok(sdw_image_decode(b->jpg, b->njpg, NULL, &img, NULL));
  sdw_image_free(&img);
}

static void run_resize(void *p) {
  image_bench *b = p;
  sdw_resize_options o = {SDW_RESIZE_CENTER_CROP, 512, 1, 0};
  sdw_image out;
  bench_ok(sdw_image_resize(&b->src, &o, &out));
  sdw_image_free(&out);
}

static void run_upscale(void *p) {
  image_bench *b = p;
  sdw_image out;
  bench_ok(b->cubic ? sdw_image_resize_cubic(&b->src, b->up_w, b->up_h, &out)
                    : sdw_image_resize_lanczos(&b->src, b->up_w, b->up_h, &out));
  sdw_image_free(&out);
}

static void run_encode(void *p) {
  image_bench *b = p;
  uint8_t *data;
  size_t n;
  bench_ok(sdw_image_encode_jpeg(&b->resized, 95, &data, &n));
  free(data);
}

static void run_chain(void *p) {
  image_bench *b = p;
  sdw_image img, out;
  bench_ok(sdw_image_decode(b->jpg, b->njpg, NULL, &img, NULL));
  sdw_resize_options o = {SDW_RESIZE_CENTER_CROP, 512, 1, 0};
  bench_ok(sdw_image_resize(&img, &o, &out));
  uint8_t *data;
  size_t n;
  bench_ok(sdw_image_encode_jpeg(&out, 95, &data, &n));
  free(data);
  sdw_image_free(&img);
  sdw_image_free(&out);
}

/* What the download stage runs: rows decoded straight into the resize. */
static void run_chain_stream(void *p) {
  image_bench *b = p;
  sdw_image out;
  sdw_resize_options o = {SDW_RESIZE_CENTER_CROP, 512, 1, 0};
  bench_ok(sdw_image_decode_resize(b->jpg, b->njpg, NULL, &o, &out, NULL, NULL, NULL));
  uint8_t *data;
  size_t n;
  bench_ok(sdw_image_encode_jpeg(&out, 95, &data, &n));
  free(data);
  sdw_image_free(&out);
}

SDW_BENCH(image_pipeline) {
  (void)ctx;
  image_bench b = {0};
  make_image(&b.src, 1024, 768);
  uint8_t *jpg;
  size_t njpg;
  bench_ok(sdw_image_encode_jpeg(&b.src, 90, &jpg, &njpg));
  b.jpg = jpg, b.njpg = njpg;
  sdw_resize_options o = {SDW_RESIZE_CENTER_CROP, 512, 1, 0};
  bench_ok(sdw_image_resize(&b.src, &o, &b.resized));
  double px_in = 1024.0 * 768 * 3, px_out = 512.0 * 512 * 3;
  double t = image_time(run_decode, &b, 5, 0.5);
  sdw_bench_report("image_decode", "JPEG q90 1024x768", "1 core", t, 0, px_in);
  t = image_time(run_resize, &b, 5, 0.5);
  sdw_bench_report("image_resize", "1024x768 center_crop 512 area", "1 core", t, 0, px_in);
  t = image_time(run_encode, &b, 5, 0.5);
  sdw_bench_report("image_encode", "JPEG q95 512x512", "1 core", t, 0, px_out);
  double t2;
  image_time2(run_chain, run_chain_stream, &b, 2.0, &t, &t2);
  sdw_bench_report("image_chain", "decode+resize+encode", "1 core", t, 0, px_in);
  printf("image_chain      %.1f images/s on one core\n", 1.0 / t);
  sdw_bench_report("image_chain", "decode_resize+encode (streamed)", "1 core", t2, 0, px_in);
  printf("image_chain      %.1f images/s on one core (streamed, as the download stage)\n",
         1.0 / t2);
  sdw_image_free(&b.src);
  make_image(&b.src, 300, 200);
  b.up_w = 768, b.up_h = 512;
  t = image_time(run_upscale, &b, 5, 0.5);
  sdw_bench_report("image_resize", "300x200 -> 768x512 lanczos4", "1 core", t, 0, 768.0 * 512 * 3);
  b.cubic = 1;
  t = image_time(run_upscale, &b, 5, 0.5);
  sdw_bench_report("image_resize", "300x200 -> 768x512 cubic", "1 core", t, 0, 768.0 * 512 * 3);
  sdw_image_free(&b.src);
  sdw_image_free(&b.resized);
  free(jpg);
}
