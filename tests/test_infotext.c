/* Infotext formatting. The round trip through AUTOMATIC1111's own parser
 * (its regex, in tests/cli/infotext_a1111.py) is checked by the sampling CLI
 * tests; here: exact layout and quoting. */
#include <string.h>

#include "core/diffusion/infotext.h"
#include "tests/test.h"

SDW_TEST(infotext_layout) {
  sdw_infotext info = {.prompt = "a red apple",
                       .negative = "blurry",
                       .steps = 30,
                       .sampler = "DDIM",
                       .cfg_scale = 7.5,
                       .seed = 42,
                       .width = 512,
                       .height = 512,
                       .model_hash = "0123456789",
                       .model = "sd_epoch_042",
                       .version = "sdw 0.1.0"};
  char buf[1024];
  size_t n = sdw_infotext_format(&info, buf, sizeof buf);
  const char *want = "a red apple\nNegative prompt: blurry\nSteps: 30, Sampler: DDIM, CFG scale: "
                     "7.5, Seed: 42, Size: 512x512, Model hash: 0123456789, Model: "
                     "sd_epoch_042, Version: sdw 0.1.0";
  CHECK(strcmp(buf, want) == 0);
  CHECK(n == strlen(want));
  info.negative = NULL;
  info.cfg_scale = 7;
  info.model = "my, model: v2";
  info.eta = 0.5;
  info.schedule_type = "Karras";
  sdw_infotext_format(&info, buf, sizeof buf);
  CHECK(strcmp(buf, "a red apple\nSteps: 30, Sampler: DDIM, Schedule type: Karras, CFG scale: 7, "
                    "Seed: 42, Size: 512x512, Model hash: 0123456789, Model: \"my, model: v2\", "
                    "Eta DDIM: 0.5, Version: sdw 0.1.0") == 0);
}

SDW_TEST(infotext_truncates_safely) {
  sdw_infotext info = {.prompt = "a very long prompt", .steps = 1, .width = 8, .height = 8};
  char small[16];
  size_t need = sdw_infotext_format(&info, small, sizeof small);
  CHECK(strlen(small) == sizeof small - 1);
  char big[512];
  CHECK(sdw_infotext_format(&info, big, sizeof big) == need && strlen(big) == need);
}
