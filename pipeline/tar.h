/* Tar archives as WebDataset shards: writing in the layout Python's tarfile
 * (and so img2dataset / webdataset) produces, reading what Python writes
 * (ustar, GNU long names, PAX extended headers), never following links or
 * producing paths outside the archive's own namespace.
 *
 * Implemented in pipeline/tar.c. */
#ifndef SDW_PIPELINE_TAR_H
#define SDW_PIPELINE_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- writing (atomic: the shard appears complete or not at all) --------------- */
typedef struct sdw_tar_writer sdw_tar_writer;

/* Starts path (written to a temporary and renamed on close). *out owned by
 * the caller: sdw_tar_writer_close or sdw_tar_writer_abort frees it. */
sdw_status sdw_tar_writer_open(const char *path, sdw_tar_writer **out);
/* Adds a regular file member (name relative, no "..", <= 255 bytes as ustar
 * prefix+name, longer names through a PAX header as Python does), mode 0644,
 * mtime as given (img2dataset uses the current time), uid/gid 0. */
sdw_status sdw_tar_writer_add(sdw_tar_writer *w, const char *name, const void *data, size_t size,
                              int64_t mtime);
/* Writes the two zero blocks, pads to the 10240-byte record as tarfile does,
 * fsyncs and renames into place. */
sdw_status sdw_tar_writer_close(sdw_tar_writer *w);
void sdw_tar_writer_abort(sdw_tar_writer *w);

/* --- reading ---------------------------------------------------------------------- */
typedef struct sdw_tar_reader sdw_tar_reader;

typedef struct sdw_tar_member {
  const char *name;  /* normalised relative path (PAX path / GNU longname applied) */
  const void *data;  /* size bytes inside the mapping, valid until close */
  size_t size;
  int64_t mtime;
  char type;         /* '0' regular; other types are skipped by next() */
} sdw_tar_member;

/* Maps path read-only. *out owned by the caller (sdw_tar_reader_close). */
sdw_status sdw_tar_reader_open(const char *path, sdw_tar_reader **out);
sdw_status sdw_tar_reader_open_memory(const void *data, size_t size, const char *name,
                                      sdw_tar_reader **out);
/* Next regular-file member; *done set at the end. Symlinks, hard links,
 * devices and directories are skipped; absolute names or names with ".."
 * components are SDW_ERR_FORMAT (a hostile archive), as are bad checksums,
 * sizes past the end and malformed PAX records. */
sdw_status sdw_tar_reader_next(sdw_tar_reader *r, sdw_tar_member *member, int *done);
void sdw_tar_reader_close(sdw_tar_reader *r);

#ifdef __cplusplus
}
#endif
#endif
