/* The frame: tab bar, panels, status line and overlays (see view.h). */
#include "tui/view.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tui/theme.h"

double sdw_tui_smoothing(int level) {
  static const double w[SDW_SMOOTH_LEVELS] = {0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99};
  if (level < 0) level = 0;
  if (level >= SDW_SMOOTH_LEVELS) level = SDW_SMOOTH_LEVELS - 1;
  return w[level];
}

double sdw_tui_zoom(int level) {
  static const double z[SDW_ZOOM_LEVELS] = {0, 10000, 1000, 100};
  return z[((level % SDW_ZOOM_LEVELS) + SDW_ZOOM_LEVELS) % SDW_ZOOM_LEVELS];
}

void sdw_tui_view_init(sdw_tui_view *v) {
  memset(v, 0, sizeof *v);
  v->focus = SDW_PANEL_CURVES;
  v->smooth_level = 4; /* 0.9, a common TensorBoard setting for noisy losses */
  sdw_tui_sample_form_reset(&v->form);
}

void sdw_tui_view_free(sdw_tui_view *v) { sdw_tui_sample_form_free(&v->form); }

void sdw_tui_view_message(sdw_tui_view *v, bool error, double now, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->message, sizeof v->message, fmt, ap);
  va_end(ap);
  v->message_error = error;
  v->message_time = now;
}

void sdw_tui_format_duration(double s, char *out, size_t cap) {
  if (!isfinite(s) || s < 0) {
    snprintf(out, cap, "-");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 86400)
    snprintf(out, cap, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
  else if (t >= 3600)
    snprintf(out, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
  else if (t >= 60)
    snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
  else
    snprintf(out, cap, "%lds", t);
}

static unsigned enabled_mask(const sdw_tui_view *v) {
  unsigned all = (1u << SDW_PANEL_COUNT) - 1;
  return (v->enabled & all) ? (v->enabled & all) : all;
}

static void focus_step(sdw_tui_view *v, int dir) {
  unsigned en = enabled_mask(v);
  int f = (int)v->focus;
  for (int i = 0; i < SDW_PANEL_COUNT; i++) {
    f = (f + dir + SDW_PANEL_COUNT) % SDW_PANEL_COUNT;
    if (en & (1u << f)) break;
  }
  v->focus = (sdw_tui_panel)f;
}

static void scroll(sdw_tui_view *v, const sdw_run_model *m, int delta) {
  switch (v->focus) {
  case SDW_PANEL_PIPELINE:
    if (v->stage_report) {
      v->report_scroll += delta;
      if (v->report_scroll < 0) v->report_scroll = 0;
    } else {
      const char *names[SDW_RUN_STAGES_MAX + 8];
      const sdw_run_stage *st[SDW_RUN_STAGES_MAX + 8];
      int rows = sdw_tui_pipeline_rows(m, names, st, SDW_RUN_STAGES_MAX + 8);
      v->stage_sel += delta;
      if (v->stage_sel >= rows) v->stage_sel = rows - 1;
      if (v->stage_sel < 0) v->stage_sel = 0;
    }
    break;
  case SDW_PANEL_LOG: {
    /* Up scrolls back in time: log_scroll counts lines above the end. */
    long s = (long)v->log_scroll - delta;
    if (s > (long)m->log_count) s = (long)m->log_count;
    if (s < 0) s = 0;
    v->log_scroll = (int)s;
    break;
  }
  case SDW_PANEL_DEVICES:
    v->devices_scroll += delta;
    if (v->devices_scroll < 0) v->devices_scroll = 0;
    break;
  default: break;
  }
}

bool sdw_tui_view_apply(sdw_tui_view *v, sdw_tui_action a, const sdw_run_model *m) {
  switch (a) {
  case SDW_ACT_NEXT_PANEL: focus_step(v, 1); return true;
  case SDW_ACT_PREV_PANEL: focus_step(v, -1); return true;
  case SDW_ACT_PANEL_1:
  case SDW_ACT_PANEL_2:
  case SDW_ACT_PANEL_3:
  case SDW_ACT_PANEL_4:
  case SDW_ACT_PANEL_5: {
    int p = (int)(a - SDW_ACT_PANEL_1);
    if (enabled_mask(v) & (1u << p)) v->focus = (sdw_tui_panel)p;
    return true;
  }
  case SDW_ACT_UP: scroll(v, m, -1); return true;
  case SDW_ACT_DOWN: scroll(v, m, 1); return true;
  case SDW_ACT_PGUP: scroll(v, m, -10); return true;
  case SDW_ACT_PGDN: scroll(v, m, 10); return true;
  case SDW_ACT_HOME: scroll(v, m, -1000000); return true;
  case SDW_ACT_END: scroll(v, m, 1000000); return true;
  case SDW_ACT_LEFT:
  case SDW_ACT_RIGHT:
    /* In a stage's report: the previous / next sample image. */
    if (v->focus == SDW_PANEL_PIPELINE && v->stage_report) {
      v->stage_image += a == SDW_ACT_RIGHT ? 1 : -1;
      if (v->stage_image < 0) v->stage_image = 0;
    }
    return true;
  case SDW_ACT_SELECT:
    if (v->focus == SDW_PANEL_PIPELINE && sdw_tui_pipeline_selected(v, m)) {
      v->stage_report = !v->stage_report;
      v->report_scroll = 0;
      v->stage_image = 0;
    }
    return true;
  case SDW_ACT_BACK:
    if (v->overlay != SDW_OVERLAY_NONE)
      v->overlay = SDW_OVERLAY_NONE;
    else
      v->stage_report = false;
    return true;
  case SDW_ACT_LOG_SCALE: v->log_scale = !v->log_scale; return true;
  case SDW_ACT_SMOOTH_MORE:
    if (v->smooth_level < SDW_SMOOTH_LEVELS - 1) v->smooth_level++;
    return true;
  case SDW_ACT_SMOOTH_LESS:
    if (v->smooth_level > 0) v->smooth_level--;
    return true;
  case SDW_ACT_ZOOM: v->zoom_level = (v->zoom_level + 1) % SDW_ZOOM_LEVELS; return true;
  case SDW_ACT_HELP:
    v->overlay = v->overlay == SDW_OVERLAY_HELP ? SDW_OVERLAY_NONE : SDW_OVERLAY_HELP;
    return true;
  default: return false;
  }
}

sdw_tui_rect sdw_panel_frame(sdw_tui_grid *g, sdw_tui_rect r, const char *title, bool focused) {
  if (r.w < 4 || r.h < 3) {
    /* No room for a border: the title (when there are two rows) then content. */
    if (r.h >= 2 && title) {
      sdw_tui_grid_text(g, r, r.x, r.y, r.w, SDW_ROLE_TITLE, title);
      return (sdw_tui_rect){r.x, r.y + 1, r.w, r.h - 1};
    }
    return r;
  }
  sdw_tui_grid_box(g, r, title, focused ? SDW_ROLE_BORDER_FOCUS : SDW_ROLE_BORDER,
                   focused ? SDW_ROLE_ACCENT : SDW_ROLE_TITLE);
  return sdw_tui_rect_inner(r);
}

/* --- tab bar and status line -------------------------------------------------------- */

static void draw_tabs(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                      const sdw_tui_layout *l) {
  if (r.w <= 0) return;
  sdw_tui_grid_fill(g, r, ' ', SDW_ROLE_NORMAL);
  int x = r.x;
  x += sdw_tui_grid_text(g, r, x, r.y, -1, SDW_ROLE_ACCENT, "sdw ");
  unsigned en = enabled_mask(v);
  for (int p = 0; p < SDW_PANEL_COUNT; p++) {
    if (!(en & (1u << p))) continue;
    bool active = p == (int)v->focus;
    char label[32];
    /* Narrow terminals get the initial only: "1 P" instead of "1 Pipeline". */
    if (r.w < 64)
      snprintf(label, sizeof label, " %d %.1s ", p + 1, sdw_tui_panel_name((sdw_tui_panel)p));
    else
      snprintf(label, sizeof label, " %d %s ", p + 1, sdw_tui_panel_name((sdw_tui_panel)p));
    x += sdw_tui_grid_text(g, r, x, r.y, -1, active ? SDW_ROLE_TAB_ACTIVE : SDW_ROLE_DIM, label);
  }
  (void)l;
  if (v->title && *v->title) {
    int room = r.x + r.w - x - 1;
    int tw = sdw_tui_text_width(v->title);
    if (room > 8) {
      if (tw > room - 1) {
        /* Keep the end of a long path: it names the run. */
        const char *t = v->title;
        while (*t && sdw_tui_text_width(t) > room - 2)
          t++;
        while (((unsigned char)*t & 0xC0) == 0x80)
          t++;
        sdw_tui_grid_text(g, r, r.x + r.w - room, r.y, room, SDW_ROLE_DIM, "…");
        sdw_tui_grid_text(g, r, r.x + r.w - room + 1, r.y, room - 1, SDW_ROLE_DIM, t);
      } else {
        sdw_tui_grid_text(g, r, r.x + r.w - tw, r.y, tw, SDW_ROLE_DIM, v->title);
      }
    }
  }
}

static void draw_status(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                        const sdw_run_model *m, double now) {
  if (r.w <= 0) return;
  sdw_tui_grid_fill(g, r, ' ', SDW_ROLE_STATUS);
  char text[512];
  const sdw_run_job *j = &m->job;
  int x = r.x;
  if (!m->run_dir[0]) {
    x += sdw_tui_grid_text(g, r, x, r.y, -1, SDW_ROLE_STATUS, " no run (pipeline only) ");
  } else if (!j->present) {
    x += sdw_tui_grid_text(g, r, x, r.y, -1, SDW_ROLE_STATUS, " waiting for job.json ");
  } else {
    char state[32];
    snprintf(state, sizeof state, " %s ", j->state[0] ? j->state : "?");
    for (char *c = state; *c; c++)
      if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    bool dead = sdw_run_job_active_state(j->state) && !m->job_alive;
    if (dead) snprintf(state, sizeof state, " NOT RUNNING ");
    uint8_t st = dead || strcmp(j->state, "failed") == 0 ? SDW_ROLE_ERROR
                 : strcmp(j->state, "paused") == 0       ? SDW_ROLE_WARN
                                                         : SDW_ROLE_TAB_ACTIVE;
    x += sdw_tui_grid_text(g, r, x, r.y, -1, st, state);
    char loss[16], eta[16], ips[16];
    snprintf(loss, sizeof loss, isfinite(j->loss) ? "%.4f" : "-", j->loss);
    sdw_tui_format_duration(j->eta_s, eta, sizeof eta);
    snprintf(ips, sizeof ips, isfinite(j->img_per_s) ? "%.1f" : "-", j->img_per_s);
    const char *ck = strrchr(j->last_checkpoint, '/');
    ck = ck ? ck + 1 : j->last_checkpoint;
    char steps[48];
    int n = snprintf(steps, sizeof steps, "step %lld", (long long)j->step);
    if (j->total_steps > 0)
      snprintf(steps + n, sizeof steps - (size_t)n, "/%lld", (long long)j->total_steps);
    /* Longest first; a message or a note on the right keeps up to 40
     * columns, so the job's numbers give way from the least useful end. */
    const char *right_text = (v->message[0] && now - v->message_time < 10) ? v->message
                             : m->status_note[0]                           ? m->status_note
                                                                           : "";
    int want_right = sdw_tui_text_width(right_text);
    if (want_right > 40) want_right = 40;
    for (int level = 0; level < 4; level++) {
      switch (level) {
      case 0:
        snprintf(text, sizeof text, " %s ep %lld  loss %s  %s img/s  ETA %s%s%.100s ", steps,
                 (long long)j->epoch, loss, ips, eta, *ck ? "  ckpt " : "", ck);
        break;
      case 1:
        snprintf(text, sizeof text, " %s ep %lld  loss %s  %s img/s  ETA %s ", steps,
                 (long long)j->epoch, loss, ips, eta);
        break;
      case 2: snprintf(text, sizeof text, " %s  loss %s  ETA %s ", steps, loss, eta); break;
      default: snprintf(text, sizeof text, " %s ", steps); break;
      }
      if (x + sdw_tui_text_width(text) + want_right + 1 <= r.x + r.w) break;
    }
    x += sdw_tui_grid_text(g, r, x, r.y, r.x + r.w - x, SDW_ROLE_STATUS, text);
  }
  /* Right side: the last message for 10 s, else the job note, else keys
   * (the longest key hint that fits). */
  int room = r.x + r.w - x - 1;
  const char *right = NULL;
  uint8_t role = SDW_ROLE_STATUS;
  if (v->message[0] && now - v->message_time < 10) {
    right = v->message;
    role = v->message_error ? SDW_ROLE_ERROR : SDW_ROLE_STATUS;
  } else if (m->status_note[0]) {
    right = m->status_note;
    role = SDW_ROLE_ERROR;
  } else {
    static const char *const run_hints[] = {"p:pause c:ckpt s:sample ?:help q:detach",
                                            "?:help q:detach", "?:help"};
    static const char *const data_hints[] = {"Enter:report r:run stage ?:help q:quit",
                                             "?:help q:quit", "?:help"};
    const char *const *hints = m->run_dir[0] ? run_hints : data_hints;
    for (size_t i = 0; i < 3 && !right; i++)
      if (sdw_tui_text_width(hints[i]) <= room) right = hints[i];
    if (!right) return;
  }
  int w = sdw_tui_text_width(right);
  if (room >= 6) {
    if (w > room) w = room;
    sdw_tui_grid_text(g, r, r.x + r.w - w - 1, r.y, w, role, right);
  }
}

/* --- overlays ------------------------------------------------------------------------ */

static sdw_tui_rect centered(sdw_tui_rect area, int w, int h) {
  if (w > area.w) w = area.w;
  if (h > area.h) h = area.h;
  return (sdw_tui_rect){area.x + (area.w - w) / 2, area.y + (area.h - h) / 2, w, h};
}

/* Blanks b and a one-cell margin around it (inside area), so the panel
 * underneath does not run up against a dialog's border. */
static void clear_around(sdw_tui_grid *g, sdw_tui_rect area, sdw_tui_rect b) {
  int x0 = b.x - 1 < area.x ? area.x : b.x - 1, y0 = b.y - 1 < area.y ? area.y : b.y - 1;
  int x1 = b.x + b.w + 1 > area.x + area.w ? area.x + area.w : b.x + b.w + 1;
  int y1 = b.y + b.h + 1 > area.y + area.h ? area.y + area.h : b.y + b.h + 1;
  sdw_tui_grid_fill(g, (sdw_tui_rect){x0, y0, x1 - x0, y1 - y0}, ' ', SDW_ROLE_NORMAL);
}

static void draw_help(sdw_tui_grid *g, sdw_tui_rect area) {
  int rows = 0;
  while (sdw_tui_key_table[rows].keys)
    rows++;
  sdw_tui_rect b = centered(area, 80, rows + 4);
  if (b.w < 10 || b.h < 3) return;
  clear_around(g, area, b);
  sdw_tui_grid_box(g, b, "keys (any key closes)", SDW_ROLE_BORDER_FOCUS, SDW_ROLE_TITLE);
  sdw_tui_rect in = sdw_tui_rect_inner(b);
  for (int i = 0; i < rows && i + 1 < in.h; i++) {
    sdw_tui_grid_text(g, in, in.x + 1, in.y + 1 + i, 17, SDW_ROLE_KEY, sdw_tui_key_table[i].keys);
    sdw_tui_grid_text(g, in, in.x + 19, in.y + 1 + i, in.w - 20, SDW_ROLE_NORMAL,
                      sdw_tui_key_table[i].what);
  }
}

static void draw_confirm(sdw_tui_grid *g, sdw_tui_rect area) {
  sdw_tui_rect b = centered(area, 44, 5);
  if (b.w < 10 || b.h < 3) return;
  clear_around(g, area, b);
  sdw_tui_grid_box(g, b, "stop the run?", SDW_ROLE_ERROR, SDW_ROLE_ERROR);
  sdw_tui_rect in = sdw_tui_rect_inner(b);
  sdw_tui_grid_text(g, in, in.x + 1, in.y + in.h / 2, in.w - 2, SDW_ROLE_NORMAL,
                    "Stop the job (checkpoint, then exit)? y/n");
}

static void draw_form(sdw_tui_grid *g, sdw_tui_rect area, const sdw_tui_sample_form *f) {
  int h = SDW_FIELD_COUNT + 4;
  sdw_tui_rect b = centered(area, area.w - 4 > 100 ? 100 : area.w - 4, h);
  if (b.w < 20 || b.h < 4) {
    b = area; /* tiny terminal: the whole body */
    if (b.w < 4 || b.h < 1) return;
  }
  clear_around(g, area, b);
  sdw_tui_grid_box(g, b, "sample (Enter: send, Esc: cancel, Tab: next field)",
                   SDW_ROLE_BORDER_FOCUS, SDW_ROLE_TITLE);
  sdw_tui_rect in = sdw_tui_rect_inner(b);
  for (int i = 0; i < SDW_FIELD_COUNT && i < in.h; i++) {
    bool focus = f->focus == i;
    int y = in.y + i;
    sdw_tui_grid_printf(g, in, in.x + 1, y, 10, focus ? SDW_ROLE_ACCENT : SDW_ROLE_DIM, "%-9s",
                        sdw_tui_sample_field_label((sdw_sample_field)i));
    int fx = in.x + 11, fw = in.w - 12;
    if (fw < 1) continue;
    if (i == SDW_FIELD_EMA) {
      sdw_tui_grid_text(g, in, fx, y, fw, focus ? SDW_ROLE_SELECTED : SDW_ROLE_NORMAL,
                        f->ema ? "[x] EMA weights (Space toggles)"
                               : "[ ] EMA weights (Space toggles)");
      continue;
    }
    const sdw_tui_line *line = &f->field[i];
    /* Scroll long text so the cursor stays visible. */
    int cur = sdw_tui_line_cursor_col(line);
    const char *t = line->text;
    int skip = cur >= fw ? cur - fw + 1 : 0;
    while (*t && skip > 0) {
      char one[8] = {0};
      size_t k = 1;
      while (t[k] && ((unsigned char)t[k] & 0xC0) == 0x80)
        k++;
      memcpy(one, t, k < 7 ? k : 7);
      skip -= sdw_tui_text_width(one);
      t += k;
    }
    sdw_tui_grid_fill(g, (sdw_tui_rect){fx, y, fw, 1}, ' ',
                      focus ? SDW_ROLE_SELECTED : SDW_ROLE_NORMAL);
    sdw_tui_grid_text(g, in, fx, y, fw, focus ? SDW_ROLE_SELECTED : SDW_ROLE_NORMAL, t);
    if (focus) {
      int cx = fx + (cur >= fw ? fw - 1 : cur);
      sdw_tui_cell c = sdw_tui_grid_at(g, cx, y);
      sdw_tui_grid_put(g, cx, y, c.ch == SDW_TUI_WIDE_TAIL ? ' ' : c.ch, SDW_ROLE_TAB_ACTIVE);
    }
  }
  if (in.h > SDW_FIELD_COUNT + 1) {
    int y = in.y + SDW_FIELD_COUNT + 1;
    if (f->error[0])
      sdw_tui_grid_text(g, in, in.x + 1, y, in.w - 2, SDW_ROLE_ERROR, f->error);
    else if (f->history_count)
      sdw_tui_grid_printf(g, in, in.x + 1, y, in.w - 2, SDW_ROLE_DIM,
                          "Up/Down in the prompt: history (%d)", f->history_count);
  }
}

void sdw_tui_view_draw(sdw_tui_grid *g, const sdw_tui_view *v, const sdw_run_model *m, double now) {
  sdw_tui_grid_fill(g, (sdw_tui_rect){0, 0, g->w, g->h}, ' ', SDW_ROLE_NORMAL);
  sdw_tui_layout l = sdw_tui_layout_compute(g->w, g->h, v->enabled, v->focus);
  draw_tabs(g, l.tabs, v, &l);
  for (int p = 0; p < SDW_PANEL_COUNT; p++) {
    sdw_tui_rect r = l.panel[p];
    if (r.w <= 0 || r.h <= 0) continue;
    bool focused = l.tiled && p == (int)v->focus;
    switch ((sdw_tui_panel)p) {
    case SDW_PANEL_PIPELINE: sdw_panel_pipeline_draw(g, r, v, m, now, focused); break;
    case SDW_PANEL_CURVES: sdw_panel_curves_draw(g, r, v, m, focused); break;
    case SDW_PANEL_DEVICES: sdw_panel_devices_draw(g, r, v, m, focused); break;
    case SDW_PANEL_PREVIEW: sdw_panel_preview_draw(g, r, v, m, focused); break;
    case SDW_PANEL_LOG: sdw_panel_log_draw(g, r, v, m, focused); break;
    default: break;
    }
  }
  draw_status(g, l.status, v, m, now);
  switch (v->overlay) {
  case SDW_OVERLAY_HELP: draw_help(g, l.body); break;
  case SDW_OVERLAY_SAMPLE: draw_form(g, l.body, &v->form); break;
  case SDW_OVERLAY_CONFIRM_STOP: draw_confirm(g, l.body); break;
  default: break;
  }
}
