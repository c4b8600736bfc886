/* The pipeline panel: one row per stage (state, progress bar, counts,
 * throughput, ETA), the selected stage's failure reasons below, and on Enter
 * the stage's report (its whole manifest). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tui/curves.h"
#include "tui/theme.h"
#include "tui/view.h"

/* The six main stages, and emoji (the demo's source, runnable with --data
 * alone): listed even before they have run, so r can start them. */
static const char *const main_stages[] = {"emoji",      "metadata", "filter", "download",
                                          "preprocess", "build",    "encode"};
enum { MAIN_STAGES = sizeof main_stages / sizeof main_stages[0] };

static const sdw_run_stage *find_stage(const sdw_run_model *m, const char *name) {
  for (int i = 0; i < m->stage_count; i++)
    if (strcmp(m->stages[i].name, name) == 0) return &m->stages[i];
  return NULL;
}

int sdw_tui_pipeline_rows(const sdw_run_model *m, const char **names, const sdw_run_stage **stages,
                          int max) {
  int n = 0;
  for (int i = 0; i < m->stage_count && n < max; i++)
    names[n] = m->stages[i].name, stages[n++] = &m->stages[i];
  for (int k = 0; k < MAIN_STAGES && n < max; k++)
    if (!find_stage(m, main_stages[k])) names[n] = main_stages[k], stages[n++] = NULL;
  for (int i = 1; i < n; i++) /* insertion sort by pipeline order (stable) */
    for (int k = i; k > 0 && sdw_run_stage_rank(names[k]) < sdw_run_stage_rank(names[k - 1]); k--) {
      const char *tn = names[k];
      const sdw_run_stage *ts = stages[k];
      names[k] = names[k - 1], stages[k] = stages[k - 1];
      names[k - 1] = tn, stages[k - 1] = ts;
    }
  return n;
}

const char *sdw_tui_pipeline_selected(const sdw_tui_view *v, const sdw_run_model *m) {
  const char *names[SDW_RUN_STAGES_MAX + 8];
  const sdw_run_stage *st[SDW_RUN_STAGES_MAX + 8];
  int rows = sdw_tui_pipeline_rows(m, names, st, SDW_RUN_STAGES_MAX + 8);
  if (rows == 0) return NULL;
  int sel = v->stage_sel < 0 ? 0 : v->stage_sel >= rows ? rows - 1 : v->stage_sel;
  return names[sel];
}

static uint8_t state_role(const char *state) {
  if (strcmp(state, "done") == 0) return SDW_ROLE_OK;
  if (strcmp(state, "running") == 0) return SDW_ROLE_ACCENT;
  if (strcmp(state, "failed") == 0 || strcmp(state, "dead") == 0) return SDW_ROLE_ERROR;
  if (strcmp(state, "interrupted") == 0) return SDW_ROLE_WARN;
  return SDW_ROLE_DIM;
}

static void bar(sdw_tui_grid *g, sdw_tui_rect clip, int x, int y, int w, double frac) {
  if (w <= 0) return;
  if (!isfinite(frac)) {
    for (int i = 0; i < w; i++)
      sdw_tui_grid_text(g, clip, x + i, y, 1, SDW_ROLE_BAR_TODO, "·");
    return;
  }
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  /* Eighth blocks: the bar moves in 1/8 cell steps. */
  static const uint32_t eighths[8] = {' ', 0x258F, 0x258E, 0x258D, 0x258C, 0x258B, 0x258A, 0x2589};
  int total = (int)lround(frac * w * 8);
  for (int i = 0; i < w; i++) {
    int here = total - i * 8;
    if (clip.w <= 0) break;
    if (here >= 8)
      sdw_tui_grid_put(g, x + i, y, 0x2588, SDW_ROLE_BAR_DONE);
    else if (here > 0)
      sdw_tui_grid_put(g, x + i, y, eighths[here], SDW_ROLE_BAR_DONE);
    else
      sdw_tui_grid_put(g, x + i, y, 0x00B7, SDW_ROLE_BAR_TODO);
  }
}

static void count_str(int64_t v, char *out, size_t cap) {
  if (v < 0)
    snprintf(out, cap, "?");
  else if (v < 100000)
    snprintf(out, cap, "%lld", (long long)v);
  else if (v < 100000000)
    snprintf(out, cap, "%.1fk", (double)v / 1e3);
  else
    snprintf(out, cap, "%.1fM", (double)v / 1e6);
}

/* The failure histogram "reason n, reason n" sorted by count (into out). */
static void failures_line(const sdw_run_stage *s, char *out, size_t cap) {
  out[0] = 0;
  const cJSON *f =
      s && s->manifest ? cJSON_GetObjectItemCaseSensitive(s->manifest, "failures") : NULL;
  if (!cJSON_IsObject(f)) return;
  const cJSON *items[64];
  int n = 0;
  for (const cJSON *c = f->child; c && n < 64; c = c->next)
    if (cJSON_IsNumber(c)) items[n++] = c;
  for (int i = 1; i < n; i++) /* insertion sort, largest first */
    for (int k = i; k > 0 && items[k]->valuedouble > items[k - 1]->valuedouble; k--) {
      const cJSON *t = items[k];
      items[k] = items[k - 1], items[k - 1] = t;
    }
  size_t len = 0;
  for (int i = 0; i < n && len + 1 < cap; i++)
    len += (size_t)snprintf(out + len, cap - len, "%s%s %.0f", i ? ", " : "", items[i]->string,
                            items[i]->valuedouble);
}

/* The runs next to the viewed one, in rows y0..y1-1 when there is room. */
static void draw_runs(sdw_tui_grid *g, sdw_tui_rect in, const sdw_run_model *m, double now, int y0,
                      int y1) {
  if (m->run_count == 0 || y1 - y0 < 2) return;
  int x = in.x + 1, y = y0;
  sdw_tui_grid_printf(g, in, x, y++, in.w - 2, SDW_ROLE_DIM,
                      "runs in %s (sdw attach RUN):", m->runs_root);
  for (int i = 0; i < m->run_count && y < y1; i++, y++) {
    const sdw_run_entry *r = &m->runs[i];
    const char *name = strrchr(r->dir, '/');
    name = name ? name + 1 : r->dir;
    bool current = strcmp(r->dir, m->run_dir) == 0;
    bool dead = sdw_run_job_active_state(r->job.state) && !r->alive;
    const char *state = dead ? "dead" : r->job.state;
    char loss[16] = "-", age[16] = "-";
    if (isfinite(r->job.loss)) snprintf(loss, sizeof loss, "%.4f", r->job.loss);
    if (isfinite(r->job.updated)) sdw_tui_format_duration(now - r->job.updated, age, sizeof age);
    sdw_tui_grid_printf(g, in, x, y, 2, SDW_ROLE_ACCENT, "%s", current ? "*" : " ");
    sdw_tui_grid_printf(g, in, x + 2, y, 20, SDW_ROLE_NORMAL, "%-19.19s", name);
    sdw_tui_grid_printf(g, in, x + 22, y, 12, dead ? SDW_ROLE_ERROR : state_role(r->job.state),
                        "%-11.11s", state);
    sdw_tui_grid_printf(g, in, x + 34, y, in.w - 36, SDW_ROLE_DIM,
                        "step %lld/%lld  loss %s  updated %s ago", (long long)r->job.step,
                        (long long)r->job.total_steps, loss, age);
  }
}

static void draw_table(sdw_tui_grid *g, sdw_tui_rect in, const sdw_tui_view *v,
                       const sdw_run_model *m, double now) {
  const char *names[SDW_RUN_STAGES_MAX + 8];
  const sdw_run_stage *st[SDW_RUN_STAGES_MAX + 8];
  int rows = sdw_tui_pipeline_rows(m, names, st, SDW_RUN_STAGES_MAX + 8);
  int sel = v->stage_sel < 0 ? 0 : v->stage_sel >= rows ? rows - 1 : v->stage_sel;
  /* Columns: the bar gets at least 10 cells; the others are dropped, least
   * useful first (rate, out, ETA, failed), until it does. */
  bool c_rate = true, c_fail = true, c_eta = true, c_out = true;
  int w_name = 16, w_state = 12, w_counts = 14, w_bar = 0;
  for (int drop = 0; drop <= 4; drop++) {
    c_rate = drop < 1, c_out = drop < 2, c_eta = drop < 3, c_fail = drop < 4;
    int fixed = w_name + w_state + w_counts + (c_out ? 8 : 0) + (c_fail ? 8 : 0) +
                (c_rate ? 9 : 0) + (c_eta ? 8 : 0);
    w_bar = in.w - 2 - fixed;
    if (w_bar >= 10) break;
  }
  if (w_bar > 40) w_bar = 40;
  if (w_bar < 0) w_bar = 0;
  int y = in.y;
  int x = in.x + 1;
  if (in.h >= 3) {
    int cx = x;
    sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%-*s", w_name, "stage");
    cx += w_name;
    sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%-*s", w_state, "state");
    cx += w_state;
    if (w_bar >= 4) sdw_tui_grid_printf(g, in, cx, y, w_bar, SDW_ROLE_DIM, "%s", "progress");
    cx += w_bar > 0 ? w_bar + 1 : 0;
    sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%*s", w_counts - 1, "in/total");
    cx += w_counts;
    if (c_out) sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%7s", "out"), cx += 8;
    if (c_fail) sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%7s", "failed"), cx += 8;
    if (c_rate) sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%8s", "items/s"), cx += 9;
    if (c_eta) sdw_tui_grid_printf(g, in, cx, y, -1, SDW_ROLE_DIM, "%7s", "ETA");
    y++;
  }
  int detail_rows = in.h >= 10 ? 3 : 0;
  int room = in.y + in.h - y - detail_rows;
  int first = sel >= room ? sel - room + 1 : 0;
  for (int i = first; i < rows && y < in.y + in.h - detail_rows; i++, y++) {
    const sdw_run_stage *s = st[i];
    bool is_sel = i == sel;
    if (is_sel) sdw_tui_grid_fill(g, (sdw_tui_rect){in.x, y, in.w, 1}, ' ', SDW_ROLE_SELECTED);
    uint8_t base = is_sel ? SDW_ROLE_SELECTED : SDW_ROLE_NORMAL;
    int cx = x;
    sdw_tui_grid_text(g, in, in.x, y, 1, base, is_sel ? ">" : " ");
    sdw_tui_grid_text(g, in, cx, y, w_name - 1, base, names[i]);
    cx += w_name;
    const char *state = s ? s->state : "not run";
    sdw_tui_grid_text(g, in, cx, y, w_state - 1, is_sel ? base : state_role(state), state);
    cx += w_state;
    double frac = NAN;
    if (s && strcmp(s->state, "done") == 0)
      frac = 1;
    else if (s && s->total > 0)
      frac = (double)s->in / (double)s->total;
    if (w_bar > 0) {
      if (s) bar(g, in, cx, y, w_bar, frac);
      cx += w_bar + 1;
    }
    char a[16], b[16], text[40];
    if (s) {
      count_str(s->in, a, sizeof a);
      count_str(s->total, b, sizeof b);
      snprintf(text, sizeof text, "%s/%s", a, b);
      sdw_tui_grid_printf(g, in, cx, y, w_counts, base, "%*s", w_counts - 1, text);
    }
    cx += w_counts;
    if (c_out) {
      if (s) count_str(s->out, a, sizeof a), sdw_tui_grid_printf(g, in, cx, y, 8, base, "%7s", a);
      cx += 8;
    }
    if (c_fail) {
      if (s) {
        count_str(s->failed, a, sizeof a);
        sdw_tui_grid_printf(g, in, cx, y, 8, s->failed > 0 && !is_sel ? SDW_ROLE_WARN : base, "%7s",
                            a);
      }
      cx += 8;
    }
    if (c_rate) {
      if (s && isfinite(s->throughput)) {
        sdw_plot_format(s->throughput, a, sizeof a);
        sdw_tui_grid_printf(g, in, cx, y, 9, base, "%8s", a);
      }
      cx += 9;
    }
    if (c_eta && s) {
      char eta[16] = "-";
      if (strcmp(s->state, "running") == 0 && s->total > 0 && s->throughput > 0)
        sdw_tui_format_duration((double)(s->total - s->in) / s->throughput, eta, sizeof eta);
      else if (strcmp(s->state, "done") == 0 && isfinite(s->finished_at) && isfinite(s->started_at))
        sdw_tui_format_duration(s->finished_at - s->started_at, eta, sizeof eta);
      sdw_tui_grid_printf(g, in, cx, y, 8, base, "%7s", eta);
    }
  }
  if (rows == 0 && in.h > 1) sdw_tui_grid_text(g, in, x, y, in.w - 2, SDW_ROLE_DIM, "no stages");
  draw_runs(g, in, m, now, y + 1, in.y + in.h - detail_rows);
  if (detail_rows == 0 || rows == 0) return;
  /* Details of the selected stage: failures, message, and the keys. */
  const sdw_run_stage *s = st[sel];
  int dy = in.y + in.h - detail_rows;
  char line[1024];
  failures_line(s, line, sizeof line);
  if (s && line[0])
    sdw_tui_grid_printf(g, in, x, dy, in.w - 2, SDW_ROLE_WARN, "%s failures: %s", names[sel], line);
  else if (s && isfinite(s->updated_at) && strcmp(s->state, "running") == 0)
    sdw_tui_grid_printf(g, in, x, dy, in.w - 2, SDW_ROLE_DIM, "%s: updated %.0f s ago", names[sel],
                        now - s->updated_at);
  if (s && s->message[0])
    sdw_tui_grid_printf(g, in, x, dy + 1, in.w - 2,
                        strcmp(s->state, "failed") == 0 ? SDW_ROLE_ERROR : SDW_ROLE_DIM, "%s",
                        s->message);
  if (!m->data_dir[0])
    sdw_tui_grid_text(g, in, x, dy + 2, in.w - 2, SDW_ROLE_DIM,
                      "no data directory: sdw attach --data DIR RUN");
  else
    sdw_tui_grid_printf(g, in, x, dy + 2, in.w - 2, SDW_ROLE_DIM,
                        "Enter: report  r: run %s  data: %s", names[sel], m->data_dir);
}

static void fmt_time(double t, char *out, size_t cap) {
  if (!isfinite(t)) {
    snprintf(out, cap, "-");
    return;
  }
  time_t tt = (time_t)t;
  struct tm tm;
  localtime_r(&tt, &tm);
  strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static void line_printf(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_printf(char *dst, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, 256, fmt, ap); /* long lines are cut at the panel's width anyway */
  va_end(ap);
}

/* The report: the manifest's fields as lines (into a caller-sized list). */
static int report_lines(const sdw_run_stage *s, const char *name, const sdw_run_model *m,
                        char lines[][256], int max) {
  int n = 0;
#define LINE(...) (n < max ? line_printf(lines[n++], __VA_ARGS__) : (void)0)
  if (!s) {
    LINE("%s has not run in %s", name, m->data_dir[0] ? m->data_dir : "(no data directory)");
    LINE("r runs: sdw pipeline %s --data %s", name, m->data_dir[0] ? m->data_dir : "DIR");
    return n;
  }
  char a[32], b[32], c[32];
  LINE("stage %s: %s (pid %ld)", s->name, s->state, s->pid);
  fmt_time(s->started_at, a, sizeof a);
  fmt_time(s->updated_at, b, sizeof b);
  fmt_time(s->finished_at, c, sizeof c);
  LINE("started %s  updated %s  finished %s", a, b, c);
  char total[24] = "unknown";
  if (s->total >= 0) snprintf(total, sizeof total, "%lld", (long long)s->total);
  LINE("total %s  in %lld  out %lld  failed %lld  skipped %lld", total, (long long)s->in,
       (long long)s->out, (long long)s->failed, (long long)s->skipped);
  if (isfinite(s->throughput)) LINE("throughput %.2f items/s", s->throughput);
  if (s->message[0]) LINE("message: %s", s->message);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(s->manifest, "failures");
  if (cJSON_IsObject(f) && f->child) {
    LINE("failures:");
    for (const cJSON *e = f->child; e; e = e->next)
      if (cJSON_IsNumber(e)) LINE("  %-24s %.0f", e->string, e->valuedouble);
  }
  const cJSON *in = cJSON_GetObjectItemCaseSensitive(s->manifest, "inputs");
  if (cJSON_IsArray(in) && cJSON_GetArraySize(in) > 0) {
    LINE("inputs (%d):", cJSON_GetArraySize(in));
    for (const cJSON *e = in->child; e; e = e->next) {
      const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "path");
      const cJSON *sz = cJSON_GetObjectItemCaseSensitive(e, "size");
      LINE("  %s  %.0f bytes", cJSON_IsString(p) ? p->valuestring : "?",
           cJSON_IsNumber(sz) ? sz->valuedouble : 0.0);
    }
  }
  const cJSON *out = cJSON_GetObjectItemCaseSensitive(s->manifest, "outputs");
  if (cJSON_IsArray(out) && cJSON_GetArraySize(out) > 0) {
    LINE("outputs (%d):", cJSON_GetArraySize(out));
    int k = 0;
    for (const cJSON *e = out->child; e; e = e->next, k++) {
      if (k == 20) {
        LINE("  ... %d more", cJSON_GetArraySize(out) - 20);
        break;
      }
      if (cJSON_IsString(e)) LINE("  %s", e->valuestring);
    }
  }
  const cJSON *extra = cJSON_GetObjectItemCaseSensitive(s->manifest, "extra");
  if (cJSON_IsObject(extra) && extra->child) {
    LINE("extra:");
    for (const cJSON *e = extra->child; e; e = e->next) {
      char *t = cJSON_PrintUnformatted(e);
      LINE("  %s: %.200s", e->string, t ? t : "?");
      free(t);
    }
  }
  LINE("log: %s/logs/%s.log", m->data_dir, s->name);
#undef LINE
  return n;
}

sdw_tui_rect sdw_panel_pipeline_image_rect(sdw_tui_rect panel, const sdw_tui_view *v) {
  sdw_tui_rect in = panel.w >= 4 && panel.h >= 3 ? sdw_tui_rect_inner(panel) : panel;
  if (!v->stage_report || in.w < 60 || in.h < 6) return (sdw_tui_rect){in.x, in.y, 0, 0};
  int w = in.w * 2 / 5;
  return (sdw_tui_rect){in.x + in.w - w, in.y + 1, w, in.h - 1};
}

void sdw_panel_pipeline_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                             const sdw_run_model *m, double now, bool focused) {
  const char *sel = sdw_tui_pipeline_selected(v, m);
  char title[96];
  if (v->stage_report && sel)
    snprintf(title, sizeof title, "1 Pipeline: %s report (Esc: back)", sel);
  else
    snprintf(title, sizeof title, "1 Pipeline");
  sdw_tui_rect in = sdw_panel_frame(g, r, title, focused);
  if (in.w <= 0 || in.h <= 0) return;
  if (!(v->stage_report && sel)) {
    draw_table(g, in, v, m, now);
    return;
  }
  const char *names[SDW_RUN_STAGES_MAX + 8];
  const sdw_run_stage *st[SDW_RUN_STAGES_MAX + 8];
  int rows = sdw_tui_pipeline_rows(m, names, st, SDW_RUN_STAGES_MAX + 8);
  const sdw_run_stage *s = NULL;
  for (int i = 0; i < rows; i++)
    if (names[i] == sel) s = st[i];
  enum { MAXL = 400 };
  char(*lines)[256] = malloc(MAXL * sizeof *lines);
  if (!lines) return;
  int n = report_lines(s, sel, m, lines, MAXL);
  int first = v->report_scroll > n - 1 ? n - 1 : v->report_scroll;
  if (first < 0) first = 0;
  /* The sample image (drawn by the app) takes the right part when there is
   * room; its caption goes on the first row above it. */
  sdw_tui_rect img = sdw_panel_pipeline_image_rect(r, v);
  int text_w = in.w - 2;
  if (img.w > 0) {
    text_w = img.x - in.x - 2;
    char caption[600];
    if (v->stage_preview)
      snprintf(caption, sizeof caption, "image %d: %s (Left/Right)", v->stage_image + 1,
               v->stage_image_label);
    else
      snprintf(caption, sizeof caption, "%s",
               v->stage_image_label[0] ? v->stage_image_label : "no images");
    sdw_tui_grid_text(g, in, img.x, in.y, img.w, SDW_ROLE_DIM, caption);
    if (v->stage_preview && v->preview_mode == SDW_PREVIEW_TEXT)
      sdw_tui_grid_printf(g, in, img.x, img.y + 1, img.w, SDW_ROLE_DIM, "%dx%d (no colour here)",
                          v->stage_preview->width, v->stage_preview->height);
  }
  for (int i = first, y = in.y; i < n && y < in.y + in.h; i++, y++)
    sdw_tui_grid_text(g, in, in.x + 1, y, text_w,
                      strncmp(lines[i], "message", 7) == 0 && s && strcmp(s->state, "failed") == 0
                          ? SDW_ROLE_ERROR
                          : SDW_ROLE_NORMAL,
                      lines[i]);
  free(lines);
}
