/* Parquet read + filter throughput (issue 6 item 11: "parquet filter rows/s
 * vs pandas+pyarrow"). Reads a LAION-like metadata file and counts the rows
 * with similarity >= 0.28, WIDTH >= 512 and HEIGHT >= 512 (nulls fail),
 * in two ways:
 *   filter-cols: only the three filter columns are read;
 *   all-cols:    every column is read (URL/TEXT strings included), as the
 *                seed's filter stage does with pd.read_parquet(path).
 * Column chunks are decoded in parallel (OpenMP over row group x column),
 * as pyarrow does with its thread pool. The file: $SDW_BENCH_PARQUET (what
 * tools/bench_parquet.py passes: a 1M-row file written by pyarrow, snappy,
 * dictionary on, pyarrow's defaults), or else a 1M-row file written here by
 * our own writer (PLAIN + snappy). Rows are reported as "rows/s" lines that
 * tools/bench_parquet.py parses, and as GB/s of file bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"

static void bench_check(sdw_status st) {
  if (st != SDW_OK) {
    fprintf(stderr, "bench_parquet: %s\n", sdw_last_error());
    exit(1);
  }
}

typedef struct pq_bench {
  sdw_parquet_file *f;
  bool all_columns;
  int sim, width, height;
  int64_t kept;
} pq_bench;

static double num_at(const sdw_parquet_array *a, int64_t i) {
  if (!sdw_parquet_array_is_valid(a, i)) return NAN;
  switch (a->type) {
  case SDW_PARQUET_INT32: return ((const int32_t *)a->values)[i];
  case SDW_PARQUET_INT64: return (double)((const int64_t *)a->values)[i];
  case SDW_PARQUET_FLOAT: return ((const float *)a->values)[i];
  case SDW_PARQUET_DOUBLE: return ((const double *)a->values)[i];
  default: return NAN;
  }
}

static void run_filter(void *arg) {
  pq_bench *b = arg;
  const int ng = sdw_parquet_num_row_groups(b->f);
  const int nc = b->all_columns ? sdw_parquet_num_columns(b->f) : 3;
  int cols[3] = {b->sim, b->width, b->height};
  sdw_parquet_array *arrs = calloc((size_t)ng * (size_t)nc, sizeof *arrs);
  int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
  for (int t = 0; t < ng * nc; t++) {
    int g = t / nc, k = t % nc;
    int c = b->all_columns ? k : cols[k];
    if (sdw_parquet_read_column(b->f, g, c, &arrs[t]) != SDW_OK) {
      fprintf(stderr, "bench_parquet: %s\n", sdw_last_error());
      failed = 1;
    }
  }
  if (failed) exit(1);
  int64_t kept = 0;
  for (int g = 0; g < ng; g++) {
    const sdw_parquet_array *s, *w, *h;
    if (b->all_columns) {
      s = &arrs[g * nc + b->sim], w = &arrs[g * nc + b->width], h = &arrs[g * nc + b->height];
    } else {
      s = &arrs[g * nc], w = &arrs[g * nc + 1], h = &arrs[g * nc + 2];
    }
    /* fast path for the usual types: double similarity, int64 sizes */
    if (s->type == SDW_PARQUET_DOUBLE && w->type == SDW_PARQUET_INT64 &&
        h->type == SDW_PARQUET_INT64) {
      const double *sv = s->values;
      const int64_t *wv = w->values, *hv = h->values;
      for (int64_t i = 0; i < s->length; i++)
        kept += (sv[i] >= 0.28) & (wv[i] >= 512) & (hv[i] >= 512) &
                sdw_parquet_array_is_valid(s, i) & sdw_parquet_array_is_valid(w, i) &
                sdw_parquet_array_is_valid(h, i);
    } else {
      for (int64_t i = 0; i < s->length; i++)
        kept += num_at(s, i) >= 0.28 && num_at(w, i) >= 512 && num_at(h, i) >= 512;
    }
  }
  for (int t = 0; t < ng * nc; t++)
    sdw_parquet_array_free(&arrs[t]);
  free(arrs);
  b->kept = kept;
}

/* A LAION-like file of n rows written by our writer (the fallback input). */
static void write_own_file(const char *path, int64_t n) {
  const sdw_parquet_field fields[] = {
      {"URL", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
      {"TEXT", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
      {"WIDTH", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, true},
      {"HEIGHT", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, true},
      {"similarity", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, true},
      {"punsafe", SDW_PARQUET_FLOAT, SDW_PARQUET_LOGICAL_NONE, true},
      {"pwatermark", SDW_PARQUET_FLOAT, SDW_PARQUET_LOGICAL_NONE, true},
      {"aesthetic", SDW_PARQUET_FLOAT, SDW_PARQUET_LOGICAL_NONE, true},
  };
  sdw_parquet_writer_options o = sdw_parquet_writer_defaults();
  o.row_group_rows = 1 << 20;
  sdw_parquet_writer *w;
  bench_check(sdw_parquet_writer_open(path, fields, 8, &o, &w));
  uint64_t s = 12345;
  char buf[256];
  for (int64_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    unsigned r = (unsigned)(s >> 33);
    snprintf(buf, sizeof buf, "https://img%u.example.com/photos/%u/%lld.jpg", r % 97, r,
             (long long)i);
    sdw_parquet_writer_set_str(w, 0, buf);
    snprintf(buf, sizeof buf, "a photo of item %u with a caption of moderate length %lld", r,
             (long long)i);
    sdw_parquet_writer_set_str(w, 1, buf);
    sdw_parquet_writer_set_i64(w, 2, 256 + (int64_t)(r % 1024));
    sdw_parquet_writer_set_i64(w, 3, 256 + (int64_t)((r >> 10) % 1024));
    sdw_parquet_writer_set_f64(w, 4, (r % 10000) / 20000.0);
    sdw_parquet_writer_set_f32(w, 5, (float)(r % 1000) / 1000.0f);
    sdw_parquet_writer_set_f32(w, 6, (float)((r >> 3) % 1000) / 1000.0f);
    sdw_parquet_writer_set_f32(w, 7, 4.0f + (float)(r % 4000) / 1000.0f);
    bench_check(sdw_parquet_writer_end_row(w));
  }
  bench_check(sdw_parquet_writer_close(w));
}

static int find_col(sdw_parquet_file *f, const char *name) {
  int c = sdw_parquet_find_column(f, name);
  if (c < 0) {
    fprintf(stderr, "bench_parquet: %s has no column %s\n", sdw_parquet_name(f), name);
    exit(1);
  }
  return c;
}

SDW_BENCH(parquet_filter) {
  (void)ctx;
  const char *path = getenv("SDW_BENCH_PARQUET");
  char own[512];
  if (!path || !*path) {
    const char *tmp = getenv("TMPDIR");
    snprintf(own, sizeof own, "%s/sdw-bench-parquet-%d.parquet", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    double t0 = sdw_bench_now();
    write_own_file(own, 1000000);
    printf("parquet: wrote %s (1M rows, our writer) in %.2f s\n", own, sdw_bench_now() - t0);
    path = own;
  }
  pq_bench b = {0};
  bench_check(sdw_parquet_open(path, NULL, &b.f));
  b.sim = find_col(b.f, "similarity");
  b.width = find_col(b.f, "WIDTH");
  b.height = find_col(b.f, "HEIGHT");
  int64_t rows = sdw_parquet_num_rows(b.f);
  FILE *fp = fopen(path, "rb");
  double file_bytes = 0;
  if (fp) {
    fseek(fp, 0, SEEK_END);
    file_bytes = (double)ftell(fp);
    fclose(fp);
  }
  for (int all = 0; all < 2; all++) {
    b.all_columns = all;
    double sec = sdw_bench_time(run_filter, &b, 5, 2.0);
    char shape[64];
    snprintf(shape, sizeof shape, "%lld rows, kept %lld", (long long)rows, (long long)b.kept);
    sdw_bench_report("parquet_filter", shape, all ? "all-cols" : "filter-cols", sec, 0, file_bytes);
    printf("parquet rows/s: sdw %s %.6e kept %lld seconds %.6f\n", all ? "all-cols" : "filter-cols",
           (double)rows / sec, (long long)b.kept, sec);
  }
  sdw_parquet_close(b.f);
  if (path == own) remove(own);
}
