/* TensorBoard event writer: CRC-32C known answers and the exact bytes of a
 * scalar record. Expected values come from outside this code base: the
 * CRC-32C check value of "123456789" (the catalogue value 0xE3069283), the
 * iSCSI test vectors of RFC 3720 B.4, and the bytes that Python protobuf
 * (tensorboard.compat.proto.event_pb2) and tensorboard's masked_crc32c
 * produce for the same event. All comparisons are exact (bit patterns). */
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/train/tfevents.h"
#include "tests/test.h"

SDW_TEST(tfevents_crc32c_known_answers) {
  CHECK(sdw_crc32c(0, "123456789", 9) == 0xE3069283u);
  unsigned char b[32];
  memset(b, 0, sizeof b);
  CHECK(sdw_crc32c(0, b, 32) == 0x8A9136AAu); /* RFC 3720 B.4: 32 bytes of zeros */
  memset(b, 0xff, sizeof b);
  CHECK(sdw_crc32c(0, b, 32) == 0x62A8AB43u); /* 32 bytes of 0xff */
  for (int i = 0; i < 32; i++)
    b[i] = (unsigned char)i;
  CHECK(sdw_crc32c(0, b, 32) == 0x46DD794Eu); /* 0, 1, ..., 31 */
  for (int i = 0; i < 32; i++)
    b[i] = (unsigned char)(31 - i);
  CHECK(sdw_crc32c(0, b, 32) == 0x113FDB5Cu); /* 31, 30, ..., 0 */
  CHECK(sdw_crc32c(0, "", 0) == 0);
  /* Continuing a CRC over a split buffer gives the CRC of the whole. */
  CHECK(sdw_crc32c(sdw_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
  /* tensorboard's masked_crc32c(b"123456789") */
  CHECK(sdw_crc32c_mask(0xE3069283u) == 0xC78AB0E5u);
}

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

SDW_TEST(tfevents_scalar_record_bytes) {
  sdw_tfevents *w = NULL;
  CHECK_OK(sdw_tfevents_open(sdw_test_tmpdir(), &w));
  REQUIRE(w != NULL);
  CHECK(strstr(sdw_tfevents_path(w), "/events.out.tfevents.") != NULL);
  CHECK_OK(sdw_tfevents_scalar(w, "train/loss", 7, 1.5, 0.25f));
  CHECK_OK(sdw_tfevents_flush(w));
  char *path = strdup(sdw_tfevents_path(w));
  sdw_tfevents_close(w);
  void *data = NULL;
  size_t size = 0;
  CHECK_OK(sdw_read_file(path, &data, &size));
  free(path);
  REQUIRE(data != NULL);
  const unsigned char *p = data;

  /* Record 1: file_version. Framing checked against the CRC known answers
   * above; the payload must hold field 3 = "brain.Event:2" right after the
   * 9-byte wall_time (field 1, fixed64). */
  REQUIRE(size >= 16);
  uint64_t n1 = le64(p);
  REQUIRE(n1 < size && 16 + n1 <= size);
  CHECK(le32(p + 8) == sdw_crc32c_mask(sdw_crc32c(0, p, 8)));
  CHECK(le32(p + 12 + n1) == sdw_crc32c_mask(sdw_crc32c(0, p + 12, n1)));
  static const unsigned char version[] = {0x1a, 0x0d, 'b', 'r', 'a', 'i', 'n', '.',
                                          'E',  'v',  'e', 'n', 't', ':', '2'};
  CHECK(n1 == 9 + sizeof version && p[12] == 0x09);
  CHECK(n1 == 9 + sizeof version && memcmp(p + 12 + 9, version, sizeof version) == 0);

  /* Record 2: Event(wall_time=1.5, step=7, summary=Summary(value=[Value(
   * tag='train/loss', simple_value=0.25)])).SerializeToString() and the
   * masked CRCs tensorboard computes for it (length header, data). */
  static const unsigned char event[] = {0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8,
                                        0x3f, 0x10, 0x07, 0x2a, 0x13, 0x0a, 0x11, 0x0a,
                                        0x0a, 0x74, 0x72, 0x61, 0x69, 0x6e, 0x2f, 0x6c,
                                        0x6f, 0x73, 0x73, 0x15, 0x00, 0x00, 0x80, 0x3e};
  const unsigned char *r = p + 16 + n1;
  REQUIRE(size == 16 + n1 + 16 + sizeof event);
  CHECK(le64(r) == sizeof event);
  CHECK(le32(r + 8) == 0x50A9ED29u);
  CHECK(memcmp(r + 12, event, sizeof event) == 0);
  CHECK(le32(r + 12 + sizeof event) == 0x1A5D98F4u);
  free(data);
}

SDW_TEST(tfevents_open_missing_dir_fails) {
  sdw_tfevents *w = (sdw_tfevents *)1;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/does/not/exist", sdw_test_tmpdir());
  CHECK(sdw_tfevents_open(dir, &w) == SDW_ERR_IO);
  CHECK(w == NULL);
  CHECK(strstr(sdw_last_error(), "does/not/exist") != NULL);
}
