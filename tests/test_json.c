/* core/base/json: real configs (the goldens' config.json files, written by
 * diffusers and transformers; expected values are the ones their READMEs
 * state for the models), typed getters, defaults, and the messages for wrong
 * types, missing keys and malformed text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "tests/test.h"

static sdw_json_doc *parse(const char *text) {
  sdw_json_doc *doc = NULL;
  sdw_status s = sdw_json_parse(text, strlen(text), "config.json", &doc);
  if (s != SDW_OK) sdw_test_fail(__FILE__, __LINE__, "parse: %s", sdw_last_error());
  return doc;
}

/* Parsing must fail with SDW_ERR_FORMAT and a message holding `needle`. */
static void check_parse_error(const char *text, size_t len, const char *needle) {
  sdw_json_doc *doc = (sdw_json_doc *)1;
  sdw_status s = sdw_json_parse(text, len, "bad.json", &doc);
  CHECK_MSG(s == SDW_ERR_FORMAT && doc == NULL, "'%.40s': %s", text, sdw_status_name(s));
  CHECK_MSG(strstr(sdw_last_error(), "bad.json") && strstr(sdw_last_error(), needle),
            "'%.40s': message '%s' lacks '%s'", text, sdw_last_error(), needle);
  if (s == SDW_OK) sdw_json_free(doc);
}

SDW_TEST(json_vae_config) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/vae-tiny/config.json", sdw_test_data_dir());
  sdw_json_doc *doc = NULL;
  CHECK_OK(sdw_json_load_file(path, &doc));
  REQUIRE(doc);
  CHECK(strcmp(sdw_json_doc_name(doc), "config.json") == 0);
  sdw_json_obj root;
  CHECK_OK(sdw_json_root(doc, &root));
  /* README: AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64),
   * layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=32,
   * act_fn='silu'), scaling_factor 0.18215, force_upcast True */
  int64_t v;
  CHECK_OK(sdw_json_get_int(&root, "in_channels", &v));
  CHECK(v == 3);
  CHECK_OK(sdw_json_get_int(&root, "latent_channels", &v));
  CHECK(v == 4);
  CHECK_OK(sdw_json_get_int(&root, "norm_num_groups", &v));
  CHECK(v == 32);
  int64_t channels[8];
  size_t n;
  CHECK_OK(sdw_json_get_int_array(&root, "block_out_channels", channels, 8, &n));
  CHECK(n == 2 && channels[0] == 32 && channels[1] == 64);
  const char *types[4];
  CHECK_OK(sdw_json_get_string_array(&root, "down_block_types", types, 4, &n));
  CHECK(n == 2 && strcmp(types[1], "DownEncoderBlock2D") == 0);
  const char *act;
  CHECK_OK(sdw_json_get_string(&root, "act_fn", &act));
  CHECK(strcmp(act, "silu") == 0);
  double scale;
  CHECK_OK(sdw_json_get_double(&root, "scaling_factor", &scale));
  CHECK(scale == 0.18215);
  bool upcast = false;
  CHECK_OK(sdw_json_get_bool(&root, "force_upcast", &upcast));
  CHECK(upcast);
  /* absent keys: defaults for the _or forms, NOT_FOUND for the others */
  CHECK_OK(sdw_json_get_double_or(&root, "shift_factor", 0.0, &scale));
  CHECK(scale == 0.0);
  CHECK(sdw_json_get_int(&root, "shift_factor", &v) == SDW_ERR_NOT_FOUND);
  CHECK(strcmp(sdw_last_error(), "config.json: missing key shift_factor") == 0);
  /* capacity too small for the array */
  CHECK(sdw_json_get_int_array(&root, "block_out_channels", channels, 1, &n) == SDW_ERR_FORMAT);
  sdw_json_free(doc);
}

SDW_TEST(json_clip_config) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/clip-text-tiny/config.json", sdw_test_data_dir());
  sdw_json_doc *doc = NULL;
  CHECK_OK(sdw_json_load_file(path, &doc));
  REQUIRE(doc);
  sdw_json_obj root;
  CHECK_OK(sdw_json_root(doc, &root));
  /* README: CLIPTextConfig(vocab_size=49408, hidden_size=64, num_hidden_layers=2,
   * num_attention_heads=4, intermediate_size=128, max_position_embeddings=77,
   * hidden_act="quick_gelu"), layer_norm_eps 1e-5, eos_token_id 49407 */
  static const struct {
    const char *key;
    int64_t want;
  } ints[] = {{"vocab_size", 49408},      {"hidden_size", 64},
              {"num_hidden_layers", 2},   {"num_attention_heads", 4},
              {"intermediate_size", 128}, {"max_position_embeddings", 77},
              {"eos_token_id", 49407}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    int64_t v = -1;
    CHECK_OK(sdw_json_get_int(&root, ints[i].key, &v));
    CHECK_MSG(v == ints[i].want, "%s = %lld", ints[i].key, (long long)v);
  }
  double eps;
  CHECK_OK(sdw_json_get_double(&root, "layer_norm_eps", &eps));
  CHECK(eps == 1e-5);
  const char *act;
  CHECK_OK(sdw_json_get_string(&root, "hidden_act", &act));
  CHECK(strcmp(act, "quick_gelu") == 0);
  /* a float where an int is wanted: "attention_dropout": 0.0 is integral,
   * "initializer_range": 0.02 is not */
  int64_t v;
  CHECK_OK(sdw_json_get_int(&root, "attention_dropout", &v));
  CHECK(v == 0);
  CHECK(sdw_json_get_int(&root, "initializer_range", &v) == SDW_ERR_FORMAT);
  CHECK_MSG(strcmp(sdw_last_error(),
                   "config.json: key initializer_range must be an integer (found 0.02)") == 0,
            "%s", sdw_last_error());
  sdw_json_free(doc);
}

SDW_TEST(json_getters_and_type_errors) {
  sdw_json_doc *doc = parse("{\"hidden_size\": \"64\", \"n\": null, \"big\": 9007199254740994,"
                            " \"exact\": 9007199254740992, \"neg\": -3, \"flag\": 1,"
                            " \"unet\": {\"block\": {\"heads\": [8, \"x\"]}, \"ch\": 320},"
                            " \"list\": [1.5, 2], \"names\": [\"a\", 3]}");
  REQUIRE(doc);
  sdw_json_obj root, unet, block;
  CHECK_OK(sdw_json_root(doc, &root));
  int64_t v;
  CHECK(sdw_json_get_int(&root, "hidden_size", &v) == SDW_ERR_FORMAT);
  CHECK_MSG(strcmp(sdw_last_error(),
                   "config.json: key hidden_size must be an integer (found a string)") == 0,
            "%s", sdw_last_error());
  /* null: the default for _or, a type error for the required form */
  CHECK_OK(sdw_json_get_int_or(&root, "n", 7, &v));
  CHECK(v == 7);
  CHECK(sdw_json_get_int(&root, "n", &v) == SDW_ERR_FORMAT && strstr(sdw_last_error(), "null"));
  CHECK(!sdw_json_has(&root, "n") && sdw_json_find(&root, "n") != NULL);
  CHECK(sdw_json_has(&root, "neg") && !sdw_json_has(&root, "absent"));
  /* above 2^53 is refused (2^53 + 2 here: 2^53 + 1 already rounds to 2^53 in
   * the double cJSON stores, so no parser of doubles can see it) */
  CHECK(sdw_json_get_int(&root, "big", &v) == SDW_ERR_FORMAT);
  CHECK_OK(sdw_json_get_int(&root, "exact", &v));
  CHECK(v == INT64_C(9007199254740992));
  CHECK_OK(sdw_json_get_int_or(&root, "neg", 0, &v));
  CHECK(v == -3);
  bool b;
  CHECK(sdw_json_get_bool(&root, "flag", &b) == SDW_ERR_FORMAT &&
        strstr(sdw_last_error(), "must be true or false (found a number)"));
  CHECK_OK(sdw_json_get_bool_or(&root, "absent", true, &b));
  CHECK(b);
  const char *s;
  CHECK_OK(sdw_json_get_string_or(&root, "absent", "dflt", &s));
  CHECK(strcmp(s, "dflt") == 0);
  CHECK(sdw_json_get_string(&root, "neg", &s) == SDW_ERR_FORMAT);
  double d;
  CHECK(sdw_json_get_double(&root, "hidden_size", &d) == SDW_ERR_FORMAT);
  /* nested objects name their path */
  CHECK_OK(sdw_json_get_object(&root, "unet", &unet));
  CHECK_OK(sdw_json_get_object(&unet, "block", &block));
  CHECK(strcmp(block.path, "unet.block") == 0);
  int64_t heads[4];
  size_t n = 99;
  CHECK(sdw_json_get_int_array(&block, "heads", heads, 4, &n) == SDW_ERR_FORMAT && n == 0);
  CHECK_MSG(strcmp(sdw_last_error(),
                   "config.json: key unet.block.heads[1] must be an integer (found a string)") == 0,
            "%s", sdw_last_error());
  CHECK(sdw_json_get_object(&unet, "ch", &block) == SDW_ERR_FORMAT &&
        strstr(sdw_last_error(), "unet.ch must be an object"));
  CHECK(sdw_json_get_object(&unet, "none", &block) == SDW_ERR_NOT_FOUND &&
        strstr(sdw_last_error(), "missing key unet.none"));
  double list[4];
  CHECK_OK(sdw_json_get_double_array(&root, "list", list, 4, &n));
  CHECK(n == 2 && list[0] == 1.5 && list[1] == 2);
  CHECK(sdw_json_get_int_array(&root, "list", heads, 4, &n) == SDW_ERR_FORMAT);
  const char *names[4];
  CHECK(sdw_json_get_string_array(&root, "names", names, 4, &n) == SDW_ERR_FORMAT &&
        strstr(sdw_last_error(), "names[1]"));
  CHECK(sdw_json_get_int_array(&root, "neg", heads, 4, &n) == SDW_ERR_FORMAT);
  sdw_json_free(doc);
}

SDW_TEST(json_malformed_text) {
  static const char *line2 = "{\"a\": 1,\n \"b\": }";
  check_parse_error(line2, strlen(line2), "line 2, column 7");
  static const char *trailing = "{\"a\": 1} trailing";
  check_parse_error(trailing, strlen(trailing), "invalid JSON at line 1, column 10");
  check_parse_error("", 0, "empty");
  static const char *dup = "{\"a\": 1, \"a\": 2}";
  check_parse_error(dup, strlen(dup), "key \"a\" appears twice");
  static const char *nested = "{\"o\": {\"k\": 1, \"k\": 1}}";
  check_parse_error(nested, strlen(nested), "key \"k\" appears twice");
  check_parse_error("{\"a\": \"\xff\"}", 10, "UTF-8");
  check_parse_error("{\"a\": 1}\0{}", 11, "NUL");
  /* a top-level value that is not an object parses but has no root object */
  sdw_json_doc *doc = parse("[1, 2]");
  REQUIRE(doc);
  sdw_json_obj root;
  CHECK(sdw_json_root(doc, &root) == SDW_ERR_FORMAT && strstr(sdw_last_error(), "object"));
  CHECK(cJSON_IsArray(sdw_json_doc_value(doc)));
  sdw_json_free(doc);
  sdw_json_free(NULL);
  /* the text need not be NUL-terminated: only len bytes are read */
  char *exact = malloc(8);
  REQUIRE(exact);
  memcpy(exact, "{\"a\":12}", 8);
  CHECK_OK(sdw_json_parse(exact, 8, "exact.json", &doc));
  if (doc) {
    int64_t v = 0;
    CHECK_OK(sdw_json_root(doc, &root));
    CHECK_OK(sdw_json_get_int(&root, "a", &v));
    CHECK(v == 12);
    sdw_json_free(doc);
  }
  free(exact);
  char path[1024];
  snprintf(path, sizeof path, "%s/absent.json", sdw_test_tmpdir());
  CHECK(sdw_json_load_file(path, &doc) == SDW_ERR_NOT_FOUND && doc == NULL);
}

SDW_TEST(json_utf8_validation) {
  static const struct {
    const char *s;
    bool ok;
  } cases[] = {
      {"plain ascii", true},
      {"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", true},
      {"\xf4\x8f\xbf\xbf", true},  /* U+10FFFF */
      {"\xed\x9f\xbf", true},      /* U+D7FF */
      {"\xc0\xaf", false},         /* overlong '/' */
      {"\xe0\x80\xaf", false},     /* overlong */
      {"\xed\xa0\x80", false},     /* surrogate U+D800 */
      {"\xf4\x90\x80\x80", false}, /* above U+10FFFF */
      {"\xf5\x80\x80\x80", false},
      {"\x80", false},     /* lone continuation */
      {"\xe2\x9c", false}, /* truncated */
      {"\xff", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK_MSG(sdw_utf8_valid(cases[i].s, strlen(cases[i].s)) == cases[i].ok, "case %zu", i);
}
