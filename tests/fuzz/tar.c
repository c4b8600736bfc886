/* libFuzzer target for the tar reader (make fuzz): any bytes must be either
 * refused with SDW_ERR_FORMAT and a message, or read as members whose data
 * lies inside the input, whose names are relative with no ".." component,
 * and whose offsets are block aligned. Built with ASan + UBSan, so any read
 * outside the input stops the run. Seeds: tests/fuzz/seeds/tar/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_tar_reader *r = NULL;
  if (sdw_tar_reader_open_memory(data, size, "fuzz.tar", &r) != SDW_OK) abort();
  volatile unsigned sink = 0;
  for (int count = 0;; count++) {
    sdw_tar_member m;
    int done = 0;
    sdw_status s = sdw_tar_reader_next(r, &m, &done);
    if (s != SDW_OK) {
      if (s != SDW_ERR_FORMAT && s != SDW_ERR_OUT_OF_MEMORY) abort();
      if (sdw_last_error()[0] == '\0') abort();
      /* sticky */
      if (sdw_tar_reader_next(r, &m, &done) != s) abort();
      break;
    }
    if (done) break;
    const uint8_t *p = m.data;
    if (p < data || p > data + size || m.size > (size_t)(data + size - p)) abort();
    if (m.offset % 512 != 0 || p != data + m.offset) abort();
    if (m.name[0] == '\0' || m.name[0] == '/') abort();
    for (const char *c = m.name; *c; c++) {
      if ((c == m.name || c[-1] == '/') && c[0] == '.' && c[1] == '.' && (c[2] == '/' || !c[2]))
        abort();
    }
    for (size_t i = 0; i < m.size; i++)
      sink += p[i];
    if (count > 1000000) abort(); /* progress: every member consumes >= 512 bytes */
  }
  (void)sink;
  sdw_tar_reader_close(r);
  return 0;
}
