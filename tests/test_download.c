/* Pieces of the download stage that can be checked without a network:
 * Python-exact JSON text (pipeline/pyjson.h) and img2dataset's X-Robots-Tag
 * opt-out rule (pipeline/http_fetch.h). The stage itself is tested end to end
 * against a loopback HTTP server by tests/cli/download.sh.
 *
 * Every expected string below was printed by CPython 3.11 (repr(float),
 * json.dumps(..., indent=4)) or follows from img2dataset 1.47's
 * is_disallowed as quoted in the comments; none comes from our own output.
 * Comparisons are exact (these are byte formats). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/http_fetch.h"
#include "pipeline/pyjson.h"
#include "tests/test.h"

SDW_TEST(pyjson_float_repr_matches_python) {
  static const struct {
    double v;
    const char *python; /* repr(v) in CPython 3.11 */
  } cases[] = {
      {0.1, "0.1"},
      {1.0, "1.0"},
      {1700000000.125, "1700000000.125"},
      {1795640416.4897225, "1795640416.4897225"},
      {0.11051583290100098, "0.11051583290100098"},
      {1e16, "1e+16"},
      {1.5e-05, "1.5e-05"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {1e-4, "0.0001"},
      {0.0001234, "0.0001234"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {-2.5, "-2.5"},
      {100.0, "100.0"},
      {1e15, "1000000000000000.0"},
      {9999999999999998.0, "9999999999999998.0"},
      {0.30000000000000004, "0.30000000000000004"},
      {9007199254740992.0, "9007199254740992.0"},
      {1e22, "1e+22"},
      {123.456, "123.456"},
      {0.0, "0.0"},
      {-0.0, "-0.0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[40];
    sdw_py_float_repr(cases[i].v, out);
    CHECK_MSG(strcmp(out, cases[i].python) == 0, "repr(%.17g): got %s, Python gives %s", cases[i].v,
              out, cases[i].python);
  }
  char out[40];
  sdw_py_float_repr(NAN, out);
  CHECK(strcmp(out, "NaN") == 0);
  sdw_py_float_repr(-INFINITY, out);
  CHECK(strcmp(out, "-Infinity") == 0);
}

SDW_TEST(pyjson_dumps_indent4_matches_python) {
  /* json.dumps({"caption": 'café ☕ 𝄞 "q" \\ \n\ttab\x01\x7f', "url": ..., ...,
   *             "nested": {"a": 1, "b": {}}}, indent=4) */
  static const char expected[] = "{\n"
                                 "    \"caption\": \"caf\\u00e9 \\u2615 \\ud834\\udd1e \\\"q\\\" "
                                 "\\\\ \\n\\ttab\\u0001\\u007f\",\n"
                                 "    \"url\": \"http://x/y?a=1&b=2\",\n"
                                 "    \"key\": \"000000000\",\n"
                                 "    \"status\": \"success\",\n"
                                 "    \"error_message\": null,\n"
                                 "    \"width\": 512,\n"
                                 "    \"exif\": \"{}\",\n"
                                 "    \"nested\": {\n"
                                 "        \"a\": 1,\n"
                                 "        \"b\": {}\n"
                                 "    }\n"
                                 "}";
  static const char caption[] =
      "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9d\x84\x9e \"q\" \\ \n\ttab\x01\x7f";
  sdw_pyjson j;
  sdw_pyjson_init(&j);
  sdw_pyjson_begin_object(&j);
  sdw_pyjson_key(&j, "caption");
  sdw_pyjson_string(&j, caption, sizeof caption - 1);
  sdw_pyjson_key(&j, "url");
  sdw_pyjson_cstring(&j, "http://x/y?a=1&b=2");
  sdw_pyjson_key(&j, "key");
  sdw_pyjson_cstring(&j, "000000000");
  sdw_pyjson_key(&j, "status");
  sdw_pyjson_cstring(&j, "success");
  sdw_pyjson_key(&j, "error_message");
  sdw_pyjson_cstring(&j, NULL);
  sdw_pyjson_key(&j, "width");
  sdw_pyjson_int(&j, 512);
  sdw_pyjson_key(&j, "exif");
  sdw_pyjson_cstring(&j, "{}");
  sdw_pyjson_key(&j, "nested");
  sdw_pyjson_begin_object(&j);
  sdw_pyjson_key(&j, "a");
  sdw_pyjson_int(&j, 1);
  sdw_pyjson_key(&j, "b");
  sdw_pyjson_begin_object(&j);
  sdw_pyjson_end_object(&j);
  sdw_pyjson_end_object(&j);
  sdw_pyjson_end_object(&j);
  REQUIRE(!j.failed && j.data);
  CHECK_MSG(strcmp(j.data, expected) == 0, "got\n%s\nexpected\n%s", j.data, expected);
  CHECK(j.size == strlen(expected));

  /* json.dumps({}, indent=4) is "{}"; invalid UTF-8 becomes U+FFFD
   * (Python would hold the text decoded with errors="replace") */
  sdw_pyjson_free(&j);
  sdw_pyjson_begin_object(&j);
  sdw_pyjson_end_object(&j);
  CHECK(strcmp(j.data, "{}") == 0);
  sdw_pyjson_free(&j);
  sdw_pyjson_string(&j, "a\xff\xc3(b\xed\xa0\x80", 8);
  CHECK_MSG(strcmp(j.data, "\"a\\ufffd\\ufffd(b\\ufffd\\ufffd\\ufffd\"") == 0, "got %s", j.data);
  sdw_pyjson_free(&j);
}

/* img2dataset 1.47 downloader.is_disallowed: for each X-Robots-Tag value,
 * split(":", 1); the directives are the last part split on "," with
 * strip().lower(); the token is the first part lower()ed (not stripped) when
 * there are two parts; disallowed when the token is absent or equals the
 * user-agent token and a directive is in the disallowed set. */
SDW_TEST(robots_tag_rule_as_img2dataset) {
  const char *tokens = "img2dataset,sdw";
  const char *dis = "noai,noimageai,noindex,noimageindex";
  static const struct {
    const char *value;
    bool disallowed;
  } cases[] = {
      {"noai", true},
      {"NOAI", true},
      {"noindex, nofollow", true},
      {"nofollow,  NoImageIndex ", true},
      {"nofollow", false},
      {"none", false}, /* not in img2dataset's list */
      {"img2dataset: noai", true},
      {"IMG2DATASET: noimageai", true},
      {"sdw: noindex", true},
      {"googlebot: noai", false},
      {"otherbot: noindex, noai", false},
      {" img2dataset: noai", false}, /* the token is not stripped */
      {"unavailable_after: 25 Jun 2010 15:00:00 PST", false},
      {"noai:img2dataset", false}, /* "noai" is then a token */
      {"", false},
      {",,", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *v = cases[i].value;
    CHECK_MSG(sdw_http_robots_disallowed(v, strlen(v), tokens, dis) == cases[i].disallowed,
              "X-Robots-Tag '%s': expected %s", v, cases[i].disallowed ? "disallowed" : "allowed");
  }
  /* no directives configured: nothing is disallowed; no tokens: only unscoped */
  CHECK(!sdw_http_robots_disallowed("noai", 4, tokens, ""));
  CHECK(!sdw_http_robots_disallowed("noai", 4, tokens, NULL));
  CHECK(!sdw_http_robots_disallowed("img2dataset: noai", 17, NULL, dis));
  CHECK(sdw_http_robots_disallowed("noai", 4, NULL, dis));
  /* a custom list */
  CHECK(sdw_http_robots_disallowed("nofollow", 8, tokens, "nofollow"));
  CHECK(!sdw_http_robots_disallowed("noai", 4, tokens, "nofollow"));
}

typedef struct got_results {
  int calls;
  uint64_t id;
  sdw_http_outcome outcome;
  int attempts;
} got_results;

static void on_result(void *ctx, sdw_http_result *r) {
  got_results *g = ctx;
  g->calls++;
  g->id = r->id;
  g->outcome = r->outcome;
  g->attempts = r->attempts;
  free(r->body);
  r->body = NULL;
}

SDW_TEST(http_engine_options_and_refused_urls) {
  sdw_http_engine *e = (sdw_http_engine *)1;
  sdw_http_options o = {.concurrency = 0, .timeout = 1};
  CHECK(sdw_http_engine_create(&o, &e) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(e == NULL);
  o.concurrency = 2;
  o.timeout = 0;
  CHECK(sdw_http_engine_create(&o, &e) == SDW_ERR_INVALID_ARGUMENT);
  /* URLs libcurl must refuse without touching the network: another
   * protocol, a local file; retries do not apply to them */
  o.timeout = 1;
  o.retries = 3;
  CHECK_OK(sdw_http_engine_create(&o, &e));
  REQUIRE(e != NULL);
  CHECK(sdw_http_pending(e) == 0 && sdw_http_room(e) == 2);
  static const char *const urls[] = {"gopher://127.0.0.1/x", "file:///etc/passwd"};
  for (int k = 0; k < 2; k++) {
    got_results g = {0};
    CHECK_OK(sdw_http_submit(e, urls[k], strlen(urls[k]), 40 + (uint64_t)k));
    CHECK(sdw_http_pending(e) == 1 && sdw_http_room(e) == 1);
    for (int i = 0; i < 200 && sdw_http_pending(e) > 0; i++)
      CHECK_OK(sdw_http_run(e, 10, on_result, &g));
    CHECK_MSG(g.calls == 1 && g.id == 40 + (uint64_t)k && g.outcome == SDW_HTTP_ERR_BAD_URL &&
                  g.attempts == 1,
              "%s: %d calls, id %llu, outcome %d, %d attempts", urls[k], g.calls,
              (unsigned long long)g.id, (int)g.outcome, g.attempts);
  }
  /* destroying with work queued frees it without callbacks */
  CHECK_OK(sdw_http_submit(e, "http://127.0.0.1:9/", 19, 1));
  sdw_http_engine_destroy(e);
}
