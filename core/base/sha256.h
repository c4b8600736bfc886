/* SHA-256 (FIPS 180-4): file fingerprints, model hashes (AUTOMATIC1111's
 * "Model hash" is the first 10 hex digits of the file's SHA-256), download
 * checksums. */
#ifndef SDW_BASE_SHA256_H
#define SDW_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_sha256 {
  uint32_t state[8];
  uint64_t length; /* bytes hashed so far */
  unsigned char block[64];
  size_t used; /* bytes in block */
} sdw_sha256;

void sdw_sha256_init(sdw_sha256 *h);
void sdw_sha256_update(sdw_sha256 *h, const void *data, size_t size);
void sdw_sha256_final(sdw_sha256 *h, unsigned char digest[32]);
/* digest -> 64 lowercase hex digits + NUL. */
void sdw_sha256_hex(const unsigned char digest[32], char hex[65]);
/* Hashes a whole file (streamed). SDW_ERR_IO / NOT_FOUND with the path. */
sdw_status sdw_sha256_file(const char *path, unsigned char digest[32]);

#ifdef __cplusplus
}
#endif
#endif
