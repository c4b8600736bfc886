/* TensorBoard event files: scalars that `tensorboard --logdir RUN` shows.
 *
 * Format: a sequence of TFRecords, each
 *   uint64 length (LE) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
 * where data is a serialized tensorflow.Event protobuf, hand-encoded here:
 *   wall_time (1, double), step (2, int64), file_version (3, string, first
 *   record "brain.Event:2"), summary (5, Summary{ value (1, Value{ tag (1,
 *   string), simple_value (2, float) }) }).
 * masked_crc(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 on CRC-32C
 * (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * Writes are buffered by stdio; sdw_tfevents_flush pushes them to the file
 * (the trainer flushes every log interval). A reader sees whole records only
 * after a flush; a crash loses at most the unflushed tail, which TensorBoard
 * skips as a truncated record.
 */
#ifndef SDW_TRAIN_TFEVENTS_H
#define SDW_TRAIN_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_tfevents sdw_tfevents;

/* Creates dir/events.out.tfevents.<secs>.<host>.<pid>.0 (dir must exist)
 * and writes the file_version record. *out is owned by the caller:
 * sdw_tfevents_close. */
sdw_status sdw_tfevents_open(const char *dir, sdw_tfevents **out);
/* Appends one scalar event (tag is copied into the record, e.g. "train/loss"). */
sdw_status sdw_tfevents_scalar(sdw_tfevents *w, const char *tag, int64_t step, double wall_time,
                               float value);
sdw_status sdw_tfevents_flush(sdw_tfevents *w);
/* Flushes and closes. NULL is a no-op. */
void sdw_tfevents_close(sdw_tfevents *w);
/* The file's path (owned by w). */
const char *sdw_tfevents_path(const sdw_tfevents *w);

/* CRC-32C of data[0..n) continuing from crc (start with 0), and the TFRecord
 * mask of a finished CRC. */
uint32_t sdw_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t sdw_crc32c_mask(uint32_t crc);

#ifdef __cplusplus
}
#endif
#endif
