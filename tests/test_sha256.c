/* SHA-256 against the FIPS 180-2 / NIST example vectors and coreutils'
 * sha256sum on a generated file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/sha256.h"
#include "tests/test.h"

static void hex_of(const void *data, size_t size, char hex[65]) {
  sdw_sha256 h;
  unsigned char d[32];
  sdw_sha256_init(&h);
  sdw_sha256_update(&h, data, size);
  sdw_sha256_final(&h, d);
  sdw_sha256_hex(d, hex);
}

SDW_TEST(sha256_nist_vectors) {
  char hex[65];
  hex_of("abc", 3, hex);
  CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
  hex_of("", 0, hex);
  CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
  const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  hex_of(two_blocks, strlen(two_blocks), hex);
  CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
  /* one million 'a', fed in uneven pieces to exercise the block buffering */
  sdw_sha256 h;
  unsigned char d[32];
  char chunk[997];
  memset(chunk, 'a', sizeof chunk);
  sdw_sha256_init(&h);
  size_t left = 1000000;
  for (size_t piece = 1; left; piece = piece % 997 + 1) {
    size_t take = piece < left ? piece : left;
    sdw_sha256_update(&h, chunk, take);
    left -= take;
  }
  sdw_sha256_final(&h, d);
  sdw_sha256_hex(d, hex);
  CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

SDW_TEST(sha256_file_matches_sha256sum) {
  char path[512], cmd[1100], expected[65] = "";
  snprintf(path, sizeof path, "%s/hash.bin", sdw_test_tmpdir());
  FILE *f = fopen(path, "wb");
  REQUIRE(f != NULL);
  for (unsigned i = 0; i < 3000000; i++)
    fputc((int)((i * 7919u) & 255u), f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
  FILE *p = popen(cmd, "r");
  REQUIRE(p != NULL);
  CHECK(fscanf(p, "%64s", expected) == 1);
  pclose(p);
  unsigned char d[32];
  char hex[65];
  CHECK_OK(sdw_sha256_file(path, d));
  sdw_sha256_hex(d, hex);
  CHECK(strcmp(hex, expected) == 0);
  CHECK(sdw_sha256_file("/nonexistent/x", d) == SDW_ERR_NOT_FOUND);
  CHECK(strstr(sdw_last_error(), "/nonexistent/x") != NULL);
}
