/* tui/view, keys, form: whole frames rendered headless at many terminal
 * sizes (0 x 0 to 300 x 100, every focus and overlay) without writing
 * outside the grid; the content at 80 x 24 and 200 x 60; the key table of
 * sdw-tui(1); the sample dialog (editing, history, validation, the request
 * it builds). Exact checks. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/test.h"
#include "tui/form.h"
#include "tui/keys.h"
#include "tui/theme.h"
#include "tui/view.h"

/* Does row y of g contain the UTF-8 text want? */
static bool row_has(const sdw_tui_grid *g, int y, const char *want) {
  char row[4096];
  size_t n = 0;
  for (int x = 0; x < g->w && n + 5 < sizeof row; x++) {
    sdw_tui_cell c = sdw_tui_grid_at(g, x, y);
    if (c.ch == SDW_TUI_WIDE_TAIL) continue;
    n += (size_t)sdw_tui_utf8_encode(c.ch, row + n);
  }
  row[n] = 0;
  return strstr(row, want) != NULL;
}

static bool screen_has(const sdw_tui_grid *g, const char *want) {
  for (int y = 0; y < g->h; y++)
    if (row_has(g, y, want)) return true;
  return false;
}

static void fill_model(sdw_run_model *m) {
  sdw_run_model_init(m, NULL, NULL);
  snprintf(m->run_dir, sizeof m->run_dir, "/runs/demo");
  snprintf(m->data_dir, sizeof m->data_dir, "/data");
  m->job.present = true;
  snprintf(m->job.state, sizeof m->job.state, "running");
  m->job_alive = true;
  m->job.step = 150, m->job.total_steps = 1000, m->job.epoch = 2;
  m->job.loss = 0.1234, m->job.img_per_s = 3.5, m->job.eta_s = 300;
  snprintf(m->job.last_checkpoint, sizeof m->job.last_checkpoint,
           "checkpoints/step-00000100.safetensors");
  for (int i = 1; i <= 150; i++) {
    char line[256];
    snprintf(line, sizeof line,
             "{\"step\":%d,\"loss\":%g,\"lr\":%g,\"grad_norm\":%g,\"img_per_s\":%g}", i,
             1.0 / i + 0.01 * (i % 7), 1e-4 * (i < 50 ? i / 50.0 : 1), 1 + 0.1 * (i % 3),
             3 + 0.01 * i);
    sdw_run_model_metric_line(m, line, strlen(line));
  }
  sdw_run_model_log(m, SDW_LOGK_INFO, "2026-11-25T22:30:01Z INFO started");
  sdw_run_model_log(m, SDW_LOGK_ERROR, "2026-11-25T22:30:02Z ERROR something failed");
  m->stage_count = 2;
  sdw_run_stage *s = &m->stages[0];
  snprintf(s->name, sizeof s->name, "emoji");
  snprintf(s->state, sizeof s->state, "done");
  s->total = 100, s->in = 100, s->out = 90, s->failed = 10, s->throughput = 50;
  s->manifest = cJSON_Parse("{\"failures\":{\"no_glyph\":7,\"too_small\":3}}");
  s = &m->stages[1];
  snprintf(s->name, sizeof s->name, "preprocess");
  snprintf(s->state, sizeof s->state, "running");
  s->total = 90, s->in = 45, s->out = 45, s->throughput = 9;
  s->manifest = cJSON_Parse("{\"outputs\":[\"tokens/00000.parquet\"]}");
}

SDW_TEST(tui_view_frames_at_every_size) {
  sdw_run_model m;
  fill_model(&m);
  sdw_tui_view v;
  sdw_tui_view_init(&v);
  sdw_tui_grid g = {0};
  static const int sizes[][2] = {{0, 0},    {1, 1},    {2, 2},     {5, 3},    {20, 5},
                                 {40, 10},  {79, 23},  {80, 24},   {119, 39}, {120, 40},
                                 {160, 48}, {200, 60}, {300, 100}, {300, 3},  {3, 100}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (int f = 0; f < SDW_PANEL_COUNT; f++)
      for (int o = 0; o <= SDW_OVERLAY_CONFIRM_STOP; o++)
        for (int report = 0; report < 2; report++) {
          REQUIRE(sdw_tui_grid_resize(&g, sizes[s][0], sizes[s][1]));
          v.focus = (sdw_tui_panel)f;
          v.overlay = (sdw_tui_overlay)o;
          v.stage_report = report;
          v.log_scale = report;
          sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
          for (int i = 0; i < g.w * g.h; i++)
            if (g.cells[i].style >= SDW_ROLE_COUNT) {
              CHECK_MSG(false, "%dx%d: cell %d has style %d", g.w, g.h, i, g.cells[i].style);
              break;
            }
        }
  sdw_tui_grid_free(&g);
  sdw_tui_view_free(&v);
  sdw_run_model_free(&m);
}

SDW_TEST(tui_view_content) {
  sdw_run_model m;
  fill_model(&m);
  sdw_tui_view v;
  sdw_tui_view_init(&v);
  sdw_tui_grid g = {0};
  REQUIRE(sdw_tui_grid_resize(&g, 80, 24));
  v.focus = SDW_PANEL_CURVES;
  v.title = m.run_dir;
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(row_has(&g, 0, "2 Curves") && row_has(&g, 0, "/runs/demo"));
  CHECK(row_has(&g, 23, "RUNNING") && row_has(&g, 23, "step 150/1000") &&
        row_has(&g, 23, "loss 0.1234"));
  CHECK(screen_has(&g, "loss") && screen_has(&g, "lr"));
  /* Braille cells are on the screen. */
  bool braille = false;
  for (int i = 0; i < g.w * g.h; i++)
    braille |= g.cells[i].ch >= 0x2801 && g.cells[i].ch <= 0x28FF;
  CHECK(braille);
  /* Pipeline: the side stage first, main stages that have not run listed. */
  v.focus = SDW_PANEL_PIPELINE;
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(row_has(&g, 3, "emoji") && row_has(&g, 3, "done") && row_has(&g, 3, "100/100"));
  CHECK(screen_has(&g, "metadata") && screen_has(&g, "not run"));
  CHECK(screen_has(&g, "emoji failures: no_glyph 7, too_small 3"));
  CHECK(screen_has(&g, "45/90"));
  const char *names[40];
  const sdw_run_stage *st[40];
  int rows = sdw_tui_pipeline_rows(&m, names, st, 40);
  CHECK(rows == 7 && strcmp(names[0], "emoji") == 0 && st[0] == &m.stages[0] &&
        strcmp(names[1], "metadata") == 0 && strcmp(names[4], "preprocess") == 0 &&
        st[4] == &m.stages[1] && st[1] == NULL && strcmp(names[6], "encode") == 0);
  /* Selecting and opening a stage's report. */
  sdw_tui_view_apply(&v, SDW_ACT_DOWN, &m);
  sdw_tui_view_apply(&v, SDW_ACT_END, &m);
  CHECK(v.stage_sel == 6 && strcmp(sdw_tui_pipeline_selected(&v, &m), "encode") == 0);
  sdw_tui_view_apply(&v, SDW_ACT_HOME, &m);
  for (int i = 0; i < 4; i++)
    sdw_tui_view_apply(&v, SDW_ACT_DOWN, &m);
  sdw_tui_view_apply(&v, SDW_ACT_SELECT, &m);
  CHECK(v.stage_report);
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(screen_has(&g, "preprocess report") && screen_has(&g, "tokens/00000.parquet"));
  sdw_tui_view_apply(&v, SDW_ACT_BACK, &m);
  CHECK(!v.stage_report);
  /* Log: the error line is highlighted. */
  v.focus = SDW_PANEL_LOG;
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(row_has(&g, 3, "something failed") && sdw_tui_grid_at(&g, 2, 3).style == SDW_ROLE_ERROR);
  /* Preview: the file, its size and how it is drawn, then its prompt; the
   * image's cells are left blank for the app to draw into. */
  sdw_preview pv;
  sdw_preview_init(&pv);
  pv.width = 64, pv.height = 32;
  v.preview = &pv;
  v.preview_mode = SDW_PREVIEW_BLOCKS_256;
  snprintf(v.preview_path, sizeof v.preview_path, "/runs/demo/samples/sample-step-1-7.png");
  snprintf(v.preview_prompt, sizeof v.preview_prompt, "a red apple");
  v.focus = SDW_PANEL_PREVIEW;
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(row_has(&g, 2, "sample-step-1-7.png  64x32, 256-colour blocks"));
  CHECK(row_has(&g, 3, "\"a red apple\""));
  sdw_tui_layout lay = sdw_tui_layout_compute(80, 24, 0, SDW_PANEL_PREVIEW);
  sdw_tui_rect ir = sdw_panel_preview_image_rect(lay.panel[SDW_PANEL_PREVIEW]);
  CHECK(ir.x == 1 && ir.y == 4 && ir.w == 78 && ir.h == 18);
  for (int y = ir.y; y < ir.y + ir.h; y++)
    for (int x = ir.x; x < ir.x + ir.w; x++)
      CHECK(sdw_tui_grid_at(&g, x, y).ch == ' ');
  v.preview = NULL;
  v.focus = SDW_PANEL_LOG;
  /* A dead job: the status line says so. */
  m.job_alive = false;
  snprintf(m.status_note, sizeof m.status_note, "job not running (last seen 22:31:05)");
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(row_has(&g, 23, "NOT RUNNING") && row_has(&g, 23, "last seen 22:31:05"));
  /* 200 x 60: every panel at once. */
  REQUIRE(sdw_tui_grid_resize(&g, 200, 60));
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  CHECK(screen_has(&g, "1 Pipeline") && screen_has(&g, "2 Curves") && screen_has(&g, "3 Devices") &&
        screen_has(&g, "4 Preview") && screen_has(&g, "5 Log"));
  /* Help lists every key of the table. */
  v.overlay = SDW_OVERLAY_HELP;
  sdw_tui_view_draw(&g, &v, &m, 1764000000.0);
  for (int i = 0; sdw_tui_key_table[i].keys; i++)
    CHECK_MSG(screen_has(&g, sdw_tui_key_table[i].what), "help lacks '%s'",
              sdw_tui_key_table[i].what);
  sdw_tui_grid_free(&g);
  sdw_tui_view_free(&v);
  sdw_run_model_free(&m);
}

SDW_TEST(tui_view_curve_options) {
  sdw_tui_view v;
  sdw_tui_view_init(&v);
  sdw_run_model m;
  sdw_run_model_init(&m, NULL, NULL);
  double w0 = sdw_tui_smoothing(v.smooth_level);
  sdw_tui_view_apply(&v, SDW_ACT_SMOOTH_MORE, &m);
  CHECK(sdw_tui_smoothing(v.smooth_level) > w0);
  for (int i = 0; i < 20; i++)
    sdw_tui_view_apply(&v, SDW_ACT_SMOOTH_LESS, &m);
  CHECK(sdw_tui_smoothing(v.smooth_level) == 0);
  for (int i = 0; i < 20; i++)
    sdw_tui_view_apply(&v, SDW_ACT_SMOOTH_MORE, &m);
  CHECK(sdw_tui_smoothing(v.smooth_level) == 0.99);
  CHECK(sdw_tui_zoom(v.zoom_level) == 0);
  sdw_tui_view_apply(&v, SDW_ACT_ZOOM, &m);
  CHECK(sdw_tui_zoom(v.zoom_level) == 10000);
  for (int i = 0; i < SDW_ZOOM_LEVELS - 1; i++)
    sdw_tui_view_apply(&v, SDW_ACT_ZOOM, &m);
  CHECK(sdw_tui_zoom(v.zoom_level) == 0);
  sdw_tui_view_apply(&v, SDW_ACT_LOG_SCALE, &m);
  CHECK(v.log_scale);
  v.focus = SDW_PANEL_LOG;
  sdw_tui_view_apply(&v, SDW_ACT_NEXT_PANEL, &m);
  CHECK(v.focus == SDW_PANEL_PIPELINE);
  sdw_tui_view_apply(&v, SDW_ACT_PREV_PANEL, &m);
  CHECK(v.focus == SDW_PANEL_LOG);
  sdw_tui_view_apply(&v, SDW_ACT_PANEL_3, &m);
  CHECK(v.focus == SDW_PANEL_DEVICES);
  /* Actions that talk to the job are not the view's. */
  CHECK(!sdw_tui_view_apply(&v, SDW_ACT_PAUSE_TOGGLE, &m));
  CHECK(!sdw_tui_view_apply(&v, SDW_ACT_DETACH, &m));
  char d[16];
  sdw_tui_format_duration(3725, d, sizeof d);
  CHECK(strcmp(d, "1h02m") == 0);
  sdw_tui_format_duration(185, d, sizeof d);
  CHECK(strcmp(d, "3m05s") == 0);
  sdw_tui_format_duration(NAN, d, sizeof d);
  CHECK(strcmp(d, "-") == 0);
  sdw_run_model_free(&m);
  sdw_tui_view_free(&v);
}

SDW_TEST(tui_keys_of_the_man_page) {
  /* The keys sdw-tui(1) documents. */
  CHECK(sdw_tui_key_action('p') == SDW_ACT_PAUSE_TOGGLE);
  CHECK(sdw_tui_key_action('c') == SDW_ACT_CHECKPOINT);
  CHECK(sdw_tui_key_action('s') == SDW_ACT_SAMPLE);
  CHECK(sdw_tui_key_action(SDW_KEY_TAB) == SDW_ACT_NEXT_PANEL);
  CHECK(sdw_tui_key_action(SDW_KEY_BTAB) == SDW_ACT_PREV_PANEL);
  for (int i = 0; i < 5; i++)
    CHECK((int)sdw_tui_key_action('1' + i) == (int)SDW_ACT_PANEL_1 + i);
  CHECK(sdw_tui_key_action(SDW_KEY_UP) == SDW_ACT_UP);
  CHECK(sdw_tui_key_action(SDW_KEY_DOWN) == SDW_ACT_DOWN);
  CHECK(sdw_tui_key_action(SDW_KEY_PGUP) == SDW_ACT_PGUP);
  CHECK(sdw_tui_key_action(SDW_KEY_PGDN) == SDW_ACT_PGDN);
  CHECK(sdw_tui_key_action(SDW_KEY_ENTER) == SDW_ACT_SELECT);
  CHECK(sdw_tui_key_action('r') == SDW_ACT_RUN_STAGE);
  CHECK(sdw_tui_key_action('l') == SDW_ACT_LOG_SCALE);
  CHECK(sdw_tui_key_action('+') == SDW_ACT_SMOOTH_MORE);
  CHECK(sdw_tui_key_action('-') == SDW_ACT_SMOOTH_LESS);
  CHECK(sdw_tui_key_action('z') == SDW_ACT_ZOOM);
  CHECK(sdw_tui_key_action('q') == SDW_ACT_DETACH);
  CHECK(sdw_tui_key_action('Q') == SDW_ACT_STOP);
  CHECK(sdw_tui_key_action('?') == SDW_ACT_HELP);
  CHECK(sdw_tui_key_action('x') == SDW_ACT_NONE);
}

SDW_TEST(tui_sample_form) {
  sdw_tui_sample_form f = {0};
  sdw_tui_sample_form_reset(&f);
  const char *typed = "a cat";
  for (const char *c = typed; *c; c++)
    sdw_tui_sample_form_key(&f, *c);
  sdw_tui_sample_form_key(&f, 0xE9); /* é: two UTF-8 bytes */
  CHECK(strcmp(f.field[SDW_FIELD_PROMPT].text, "a cat\xc3\xa9") == 0);
  CHECK(sdw_tui_line_cursor_col(&f.field[SDW_FIELD_PROMPT]) == 6);
  sdw_tui_sample_form_key(&f, SDW_KEY_BACKSPACE); /* removes the whole é */
  CHECK(strcmp(f.field[SDW_FIELD_PROMPT].text, "a cat") == 0);
  sdw_tui_sample_form_key(&f, SDW_KEY_HOME);
  sdw_tui_sample_form_key(&f, SDW_KEY_DELETE);
  sdw_tui_sample_form_key(&f, 'A');
  CHECK(strcmp(f.field[SDW_FIELD_PROMPT].text, "A cat") == 0);
  /* Tab to the steps field: a bad value is refused with a reason. */
  sdw_tui_sample_form_key(&f, SDW_KEY_TAB);
  sdw_tui_sample_form_key(&f, SDW_KEY_TAB);
  CHECK(f.focus == SDW_FIELD_STEPS);
  sdw_tui_sample_form_key(&f, 21); /* ^U */
  sdw_tui_sample_form_key(&f, 'x');
  CHECK(sdw_tui_sample_form_key(&f, SDW_KEY_ENTER) == SDW_FORM_SUBMIT);
  CHECK(sdw_tui_sample_form_request(&f) == NULL && strstr(f.error, "steps") != NULL);
  sdw_tui_sample_form_key(&f, SDW_KEY_BACKSPACE);
  sdw_tui_sample_form_key(&f, '3');
  sdw_tui_sample_form_key(&f, '0');
  sdw_tui_sample_form_key(&f, SDW_KEY_DOWN); /* CFG */
  sdw_tui_sample_form_key(&f, SDW_KEY_DOWN); /* seed */
  sdw_tui_sample_form_key(&f, '4');
  sdw_tui_sample_form_key(&f, '2');
  sdw_tui_sample_form_key(&f, SDW_KEY_DOWN); /* EMA */
  sdw_tui_sample_form_key(&f, ' ');
  CHECK(!f.ema);
  cJSON *req = sdw_tui_sample_form_request(&f);
  REQUIRE(req);
  CHECK(strcmp(cJSON_GetObjectItem(req, "cmd")->valuestring, "sample") == 0);
  CHECK(strcmp(cJSON_GetObjectItem(req, "prompt")->valuestring, "A cat") == 0);
  CHECK(cJSON_GetObjectItem(req, "negative") == NULL);
  CHECK(cJSON_GetObjectItem(req, "steps")->valuedouble == 30);
  CHECK(cJSON_GetObjectItem(req, "cfg")->valuedouble == 7.5);
  CHECK(cJSON_GetObjectItem(req, "seed")->valuedouble == 42);
  CHECK(cJSON_IsFalse(cJSON_GetObjectItem(req, "ema")));
  cJSON_Delete(req);
  /* History: a new dialog, Up brings the last prompt back, Down the draft. */
  sdw_tui_sample_form_reset(&f);
  sdw_tui_sample_form_key(&f, 'd');
  sdw_tui_sample_form_key(&f, SDW_KEY_UP);
  CHECK(strcmp(f.field[SDW_FIELD_PROMPT].text, "A cat") == 0);
  sdw_tui_sample_form_key(&f, SDW_KEY_UP); /* no older entry: stays */
  CHECK(strcmp(f.field[SDW_FIELD_PROMPT].text, "A cat") == 0);
  sdw_tui_sample_form_key(&f, SDW_KEY_DOWN);
  CHECK(strcmp(f.field[SDW_FIELD_PROMPT].text, "d") == 0);
  /* An empty prompt and a bad CFG are refused. */
  sdw_tui_sample_form_reset(&f);
  CHECK(sdw_tui_sample_form_request(&f) == NULL && strstr(f.error, "prompt") != NULL);
  sdw_tui_line_set(&f.field[SDW_FIELD_PROMPT], "x");
  sdw_tui_line_set(&f.field[SDW_FIELD_CFG], "nan");
  CHECK(sdw_tui_sample_form_request(&f) == NULL && f.focus == SDW_FIELD_CFG);
  sdw_tui_line_set(&f.field[SDW_FIELD_CFG], "7");
  sdw_tui_line_set(&f.field[SDW_FIELD_SEED], "-1");
  CHECK(sdw_tui_sample_form_request(&f) == NULL && f.focus == SDW_FIELD_SEED);
  CHECK(sdw_tui_sample_form_key(&f, SDW_KEY_ESC) == SDW_FORM_CANCEL);
  sdw_tui_sample_form_free(&f);
}

SDW_TEST(tui_theme_no_color) {
  sdw_tui_theme t;
  CHECK(sdw_tui_theme_load("light", false, &t) && t.color && strcmp(t.name, "light") == 0);
  CHECK(sdw_tui_theme_load("light", true, &t) && !t.color && strcmp(t.name, "mono") == 0);
  CHECK(!sdw_tui_theme_load("neon", false, &t) && strcmp(t.name, "default") == 0);
  /* Mono still tells the selection and errors apart by attributes. */
  sdw_tui_theme_load(NULL, true, &t);
  CHECK(t.role[SDW_ROLE_SELECTED].attrs & SDW_ATTR_REVERSE);
  CHECK(t.role[SDW_ROLE_ERROR].attrs != 0);
}

SDW_TEST(tui_theme_settings_file) {
  char path[512], name[64];
  snprintf(path, sizeof path, "%s/tui_theme.ini", sdw_test_tmpdir());
  FILE *f = fopen(path, "w");
  REQUIRE(f);
  fputs("# settings\n[tui]\nthemes_dir = x\ntheme = mono\n  theme   =   light  \n", f);
  fclose(f);
  sdw_tui_theme_from_file(path, name, sizeof name);
  CHECK(strcmp(name, "light") == 0); /* the last theme line wins */
  sdw_tui_theme_from_file("/nonexistent/tui.ini", name, sizeof name);
  CHECK(name[0] == 0);
}
