/* The training configuration's pure helpers: val_prompts splitting and the
 * vae = pixels switch (core/train/train_config.h). Expected values are
 * written out by hand from sdw.conf(5), not taken from sdw's output. */
#include <stdlib.h>
#include <string.h>

#include "core/train/train_config.h"
#include "tests/test.h"

/* The prompts of c, or -1 when splitting fails. */
static int split(sdw_train_config *c, const char *value, const char **prompts, char *buf,
                 size_t size) {
  if (sdw_train_config_set(c, "val_prompts", value, "test") != SDW_OK) return -1;
  int n = -1;
  if (sdw_train_config_val_prompts(c, buf, size, prompts, &n) != SDW_OK) return -1;
  return n;
}

SDW_TEST(train_config_val_prompts_split) {
  sdw_train_config c;
  sdw_train_config_defaults(&c);
  char buf[SDW_TRAIN_VAL_PROMPTS_BYTES];
  const char *p[SDW_TRAIN_VAL_PROMPTS_MAX];
  /* the default: the seed's four prompts (SEED.md 2.7), in order */
  CHECK(split(&c, "", p, buf, sizeof buf) == 4);
  CHECK(strcmp(p[0], "epic mountain landscape at golden hour, photorealistic, detailed, 8k") == 0);
  CHECK(strcmp(p[3], "beautiful flower meadow, sunlight, sharp focus, nature photography") == 0);
  /* '|' separates, surrounding spaces go, inner ones stay */
  REQUIRE(split(&c, "a|b|c", p, buf, sizeof buf) == 3);
  CHECK(strcmp(p[0], "a") == 0 && strcmp(p[1], "b") == 0 && strcmp(p[2], "c") == 0);
  REQUIRE(split(&c, " red apple |rocket|  cat face ", p, buf, sizeof buf) == 3);
  CHECK(strcmp(p[0], "red apple") == 0 && strcmp(p[1], "rocket") == 0);
  CHECK(strcmp(p[2], "cat face") == 0);
  CHECK(split(&c, "one prompt, with a comma", p, buf, sizeof buf) == 1);
  CHECK(strcmp(p[0], "one prompt, with a comma") == 0);
  /* the value itself is not modified (the config is written back as given) */
  CHECK(strcmp(c.val_prompts, "one prompt, with a comma") == 0);
  /* 16 is the most; 17 and empty prompts are errors */
  CHECK(split(&c, "1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16", p, buf, sizeof buf) == 16);
  CHECK(strcmp(p[15], "16") == 0);
  CHECK(split(&c, "1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17", p, buf, sizeof buf) == -1);
  CHECK(split(&c, "a||b", p, buf, sizeof buf) == -1);
  CHECK(split(&c, "a|", p, buf, sizeof buf) == -1);
  CHECK(split(&c, "|a", p, buf, sizeof buf) == -1);
  CHECK(split(&c, "a| |b", p, buf, sizeof buf) == -1);
  /* a buffer too small is an error, not a truncation */
  CHECK(split(&c, "abc|def", p, buf, 4) == -1);
}

SDW_TEST(train_config_validate_checks_val_prompts_and_pixels) {
  sdw_train_config c;
  sdw_train_config_defaults(&c);
  CHECK_OK(sdw_train_config_set(&c, "train_data", "/data", "test"));
  CHECK_OK(sdw_train_config_set(&c, "text_encoder", "none", "test"));
  CHECK_OK(sdw_train_config_validate(&c));
  CHECK_OK(sdw_train_config_set(&c, "val_prompts", "x||y", "test"));
  CHECK(sdw_train_config_validate(&c) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(sdw_last_error(), "val_prompts") != NULL);
  CHECK_OK(sdw_train_config_set(&c, "val_prompts", "x|y", "test"));
  CHECK_OK(sdw_train_config_validate(&c));
  /* vae: pixels is the pixel-space switch; a path or empty is not */
  CHECK(!sdw_train_config_pixels(&c));
  CHECK_OK(sdw_train_config_set(&c, "vae", "pixels", "test"));
  CHECK(sdw_train_config_pixels(&c));
  CHECK_OK(sdw_train_config_set(&c, "vae", "models/pixels", "test"));
  CHECK(!sdw_train_config_pixels(&c));
  /* both keys survive the resolved config text (RUN/config.ini) */
  CHECK_OK(sdw_train_config_set(&c, "vae", "pixels", "test"));
  char *text = sdw_train_config_format(&c);
  REQUIRE(text);
  sdw_train_config d;
  sdw_train_config_defaults(&d);
  CHECK_OK(sdw_train_config_parse(&d, text, strlen(text), "config.ini"));
  CHECK(strcmp(d.vae, "pixels") == 0 && strcmp(d.val_prompts, "x|y") == 0);
  free(text);
}
