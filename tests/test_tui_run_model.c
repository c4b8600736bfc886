/* tui/run_model: following append-only files like tail -f (partial lines,
 * truncation, replacement), metrics.jsonl and job.json parsing, events from
 * the socket, the log ring, pipeline manifests (order, a dead stage), the
 * data directory taken from config.ini, and a dead job noticed. Exact
 * checks on files the test writes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/test.h"
#include "tui/run_model.h"

static void write_file(const char *path, const char *text, const char *mode) {
  FILE *f = fopen(path, mode);
  if (!f) {
    CHECK_MSG(false, "cannot write %s", path);
    return;
  }
  fputs(text, f);
  fclose(f);
}

typedef struct lines {
  int n;
  char text[8][64];
} lines;

static void collect(void *user, const char *line, size_t len) {
  lines *l = user;
  if (l->n < 8) snprintf(l->text[l->n], 64, "%.*s", (int)len, line);
  l->n++;
}

SDW_TEST(tui_tail_follows_a_file) {
  char path[512];
  snprintf(path, sizeof path, "%s/tui_tail.txt", sdw_test_tmpdir());
  unlink(path);
  sdw_tail t;
  sdw_tail_init(&t, path);
  lines l = {0};
  CHECK(sdw_tail_poll(&t, collect, &l) == 0); /* no file yet */
  write_file(path, "one\ntw", "w");
  CHECK(sdw_tail_poll(&t, collect, &l) == 1 && strcmp(l.text[0], "one") == 0);
  CHECK(sdw_tail_poll(&t, collect, &l) == 0); /* "tw" waits for its newline */
  write_file(path, "o\r\nthree\n", "a");
  CHECK(sdw_tail_poll(&t, collect, &l) == 2);
  CHECK(strcmp(l.text[1], "two") == 0 && strcmp(l.text[2], "three") == 0);
  /* Truncated and rewritten: read again from the start. */
  write_file(path, "new\n", "w");
  CHECK(sdw_tail_poll(&t, collect, &l) == 1 && strcmp(l.text[3], "new") == 0);
  /* Replaced by another file (rename over it), even one just as long. */
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  write_file(tmp, "abc\n", "w");
  CHECK(rename(tmp, path) == 0);
  CHECK(sdw_tail_poll(&t, collect, &l) == 1 && strcmp(l.text[4], "abc") == 0);
  sdw_tail_free(&t);
}

SDW_TEST(tui_metrics_and_events) {
  sdw_run_model m;
  sdw_run_model_init(&m, NULL, NULL);
  const char *text[] = {
      "{\"step\":1,\"epoch\":0,\"loss\":0.5,\"lr\":0.001,\"grad_norm\":2,\"img_per_s\":10}",
      "{\"step\":2,\"loss\":0.25}",
      "{\"step\":2,\"loss\":9}", /* not after step 2: ignored */
      "{\"step\":3,\"skipped\":true,\"reason\":\"nan\"}",
      "{\"step\":3,\"epoch\":0,\"val_loss\":0.3,\"time\":1}",
      "not json",
      "[1,2]",
      "{\"loss\":1}", /* no step: ignored */
  };
  for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
    sdw_run_model_metric_line(&m, text[i], strlen(text[i]));
  CHECK(m.metrics.n == 2);
  CHECK(m.metrics.step[0] == 1 && m.metrics.loss[0] == 0.5 && m.metrics.lr[0] == 0.001);
  CHECK(m.metrics.grad_norm[0] == 2 && m.metrics.img_per_s[0] == 10);
  CHECK(m.metrics.step[1] == 2 && m.metrics.loss[1] == 0.25 && isnan(m.metrics.lr[1]));
  CHECK(m.skipped_steps == 1);
  CHECK(m.val.n == 1 && m.val.step[0] == 3 && m.val.val_loss[0] == 0.3);
  /* Socket events: a metric extends the history, a state changes the job. */
  cJSON *ev = cJSON_Parse("{\"event\":\"metric\",\"step\":5,\"loss\":0.125,\"img_per_s\":3}");
  sdw_run_model_apply_event(&m, ev);
  cJSON_Delete(ev);
  CHECK(m.metrics.n == 3 && m.metrics.step[2] == 5 && m.job.step == 5 && m.job.loss == 0.125);
  ev = cJSON_Parse("{\"event\":\"state\",\"state\":\"paused\"}");
  sdw_run_model_apply_event(&m, ev);
  cJSON_Delete(ev);
  CHECK(strcmp(m.job.state, "paused") == 0);
  ev = cJSON_Parse("{\"event\":\"checkpoint\",\"path\":\"checkpoints/step-00000005.safetensors\"}");
  sdw_run_model_apply_event(&m, ev);
  cJSON_Delete(ev);
  CHECK(strcmp(m.job.last_checkpoint, "checkpoints/step-00000005.safetensors") == 0);
  /* The log ring keeps the newest SDW_RUN_LOG_MAX lines. */
  for (int i = 0; i < SDW_RUN_LOG_MAX + 10; i++) {
    char b[32];
    snprintf(b, sizeof b, "line %d", i);
    sdw_run_model_log(&m, SDW_LOGK_INFO, b);
  }
  CHECK(m.log_count == SDW_RUN_LOG_MAX && m.log_total == SDW_RUN_LOG_MAX + 10);
  CHECK(strcmp(sdw_run_model_log_at(&m, 0)->text, "line 10") == 0);
  CHECK(sdw_run_model_log_at(&m, SDW_RUN_LOG_MAX) == NULL);
  sdw_run_model_free(&m);
}

SDW_TEST(tui_job_json) {
  sdw_run_job j;
  CHECK(sdw_run_job_parse("{\"format\":\"sdw-job/1\",\"pid\":42,\"host\":\"h\",\"state\":"
                          "\"running\",\"step\":7,\"epoch\":1,\"total_steps\":100,\"loss\":0.5,"
                          "\"lr\":1e-4,\"img_per_s\":2.5,\"eta_s\":60,\"last_checkpoint\":\"c\","
                          "\"error\":\"\",\"updated\":1764000000}",
                          &j));
  CHECK(j.pid == 42 && j.step == 7 && j.epoch == 1 && j.total_steps == 100);
  CHECK(strcmp(j.state, "running") == 0 && strcmp(j.host, "h") == 0 && j.loss == 0.5);
  CHECK(j.eta_s == 60 && j.updated == 1764000000 && strcmp(j.last_checkpoint, "c") == 0);
  CHECK(!sdw_run_job_parse("{\"pid\":", &j));
  CHECK(sdw_run_job_active_state("running") && sdw_run_job_active_state("paused"));
  CHECK(!sdw_run_job_active_state("finished") && !sdw_run_job_active_state("failed") &&
        !sdw_run_job_active_state("stopped"));
}

SDW_TEST(tui_run_dir_and_manifests) {
  char root[512], run[600], data[600], p[800];
  snprintf(root, sizeof root, "%s/tui_model", sdw_test_tmpdir());
  snprintf(run, sizeof run, "%s/runs/r1", root);
  snprintf(data, sizeof data, "%s/data", root);
  mkdir(root, 0755);
  snprintf(p, sizeof p, "%s/runs", root);
  mkdir(p, 0755);
  mkdir(run, 0755);
  mkdir(data, 0755);
  snprintf(p, sizeof p, "%s/manifests", data);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/latents", data);
  mkdir(p, 0755);
  /* config.ini names the latent store inside DATA, relative to the run's
   * parent: the model walks up to the directory holding manifests/. */
  snprintf(p, sizeof p, "%s/config.ini", run);
  write_file(p, "[data]\ntrain_data = ../data/latents\n", "w");
  char guess[1024];
  sdw_run_model_guess_data(run, guess, sizeof guess);
  char want[1024];
  snprintf(want, sizeof want, "%s/runs/../data", root);
  CHECK_MSG(strcmp(guess, want) == 0, "guessed '%s'", guess);
  /* Manifests: build before preprocess, emoji first; a running stage whose
   * pid does not exist is "dead". 2^30 is above any pid_max. */
  snprintf(p, sizeof p, "%s/manifests/build.json", data);
  write_file(p,
             "{\"stage\":\"build\",\"state\":\"running\",\"pid\":1073741824,\"total\":10,"
             "\"counts\":{\"in\":4,\"out\":4,\"failed\":0,\"skipped\":0},\"throughput\":2}",
             "w");
  snprintf(p, sizeof p, "%s/manifests/preprocess.json", data);
  write_file(p,
             "{\"stage\":\"preprocess\",\"state\":\"done\",\"pid\":1,\"total\":10,"
             "\"counts\":{\"in\":10,\"out\":9,\"failed\":1,\"skipped\":0}}",
             "w");
  snprintf(p, sizeof p, "%s/manifests/emoji.json", data);
  write_file(p, "{\"stage\":\"emoji\",\"state\":\"failed\",\"message\":\"no font\"}", "w");
  snprintf(p, sizeof p, "%s/manifests/broken.json", data);
  write_file(p, "{\"stage\":", "w");
  /* The run: job.json of a process that is gone, two metric lines. */
  snprintf(p, sizeof p, "%s/job.json", run);
  char host[128] = "";
  gethostname(host, sizeof host - 1);
  char job[512];
  snprintf(job, sizeof job,
           "{\"pid\":1073741824,\"host\":\"%s\",\"state\":\"running\",\"step\":3,"
           "\"updated\":1764000000}",
           host);
  write_file(p, job, "w");
  snprintf(p, sizeof p, "%s/metrics.jsonl", run);
  write_file(p, "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":0.5}\n{\"step\":3,", "w");
  snprintf(p, sizeof p, "%s/events.log", run);
  write_file(p, "2026-11-25T22:30:01Z INFO started\n2026-11-25T22:30:02Z ERROR boom\n", "w");
  sdw_run_model m;
  sdw_run_model_init(&m, run, NULL);
  CHECK(strcmp(m.data_dir, want) == 0);
  sdw_run_model_poll(&m, 1000.0);
  REQUIRE(m.stage_count == 3);
  CHECK(strcmp(m.stages[0].name, "emoji") == 0 && strcmp(m.stages[0].message, "no font") == 0);
  CHECK(strcmp(m.stages[1].name, "preprocess") == 0 && m.stages[1].failed == 1);
  CHECK(strcmp(m.stages[2].name, "build") == 0 && strcmp(m.stages[2].state, "dead") == 0);
  CHECK(m.stages[2].total == 10 && m.stages[2].in == 4 && m.stages[2].throughput == 2);
  CHECK(m.metrics.n == 2 && m.job.step == 3);
  CHECK(m.log_count == 2 && sdw_run_model_log_at(&m, 1)->kind == SDW_LOGK_ERROR);
  CHECK(!m.job_alive);
  CHECK_MSG(strncmp(m.status_note, "job not running (last seen ", 27) == 0, "note '%s'",
            m.status_note);
  /* The rest of the third line arrives. */
  write_file(p, "", "a");
  snprintf(p, sizeof p, "%s/metrics.jsonl", run);
  write_file(p, "\"loss\":0.25}\n", "a");
  sdw_run_model_poll(&m, 1000.2);
  CHECK(m.metrics.n == 3 && m.metrics.loss[2] == 0.25);
  /* Finished: no longer a dead job, the note says finished. */
  snprintf(p, sizeof p, "%s/job.json", run);
  write_file(p, "{\"pid\":1073741824,\"state\":\"finished\",\"step\":3}", "w");
  sdw_run_model_poll(&m, 1000.4);
  CHECK(strcmp(m.status_note, "job finished") == 0);
  sdw_run_model_free(&m);
}

SDW_TEST(tui_runs_list) {
  /* Runs directly in root and in root/runs, newest update first; folders
   * without a job.json (or with a broken one) are not runs. */
  char root[512], p[700];
  snprintf(root, sizeof root, "%s/tui_runs", sdw_test_tmpdir());
  const char *dirs[] = {"", "/runs", "/runs/a", "/runs/b", "/c", "/notarun", "/broken"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(p, sizeof p, "%s%s", root, dirs[i]);
    mkdir(p, 0755);
  }
  snprintf(p, sizeof p, "%s/runs/a/job.json", root);
  write_file(p, "{\"state\":\"finished\",\"step\":10,\"updated\":100}", "w");
  snprintf(p, sizeof p, "%s/runs/b/job.json", root);
  write_file(p, "{\"state\":\"running\",\"pid\":1073741824,\"updated\":200}", "w");
  snprintf(p, sizeof p, "%s/c/job.json", root);
  write_file(p, "{\"state\":\"stopped\",\"updated\":150}", "w");
  snprintf(p, sizeof p, "%s/broken/job.json", root);
  write_file(p, "{\"state\":", "w");
  sdw_run_entry runs[8];
  int n = sdw_run_model_scan_runs(root, runs, 8);
  REQUIRE(n == 3);
  char want[700];
  snprintf(want, sizeof want, "%s/runs/b", root);
  CHECK(strcmp(runs[0].dir, want) == 0 && !runs[0].alive); /* running, but no such pid */
  snprintf(want, sizeof want, "%s/c", root);
  CHECK(strcmp(runs[1].dir, want) == 0 && strcmp(runs[1].job.state, "stopped") == 0);
  snprintf(want, sizeof want, "%s/runs/a", root);
  CHECK(strcmp(runs[2].dir, want) == 0 && runs[2].job.step == 10);
  CHECK(sdw_run_model_scan_runs(root, runs, 2) == 2);
  CHECK(sdw_run_model_scan_runs("", runs, 8) == 0);
}
