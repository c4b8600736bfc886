/* Tar archives as WebDataset shards: writing in the layout Python's tarfile
 * (and so img2dataset / webdataset) produces, reading what Python writes
 * (ustar, GNU long names, PAX extended headers), never following links or
 * producing paths outside the archive's own namespace.
 *
 * What img2dataset writes (webdataset.TarWriter on Python's tarfile, whose
 * default format is PAX): for every member a "././@PaxHeader" 'x' block whose
 * one record is "mtime=<repr of time.time()>", then a ustar header with mode
 * 0444, uid/gid 0, uname/gname "bigdata", the mtime rounded to an integer,
 * then the data padded to 512 bytes; at the end two zero blocks and zero
 * padding to a multiple of 10240 bytes. The writer reproduces this byte for
 * byte (tests/cli/tar_interop.sh compares against Python).
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

/* Member metadata. The defaults (sdw_tar_writer_open, or options NULL) are
 * webdataset.TarWriter's. */
typedef struct sdw_tar_writer_options {
  int mode;          /* permission bits; 0444 */
  const char *uname; /* <= 32 bytes; "bigdata" */
  const char *gname; /* <= 32 bytes; "bigdata" */
  /* 1: mtime is a Python float, as time.time() is: the exact value goes in a
   * PAX "mtime" record (Python's repr) and the ustar field holds round(mtime),
   * as tarfile does. 0: mtime is truncated to an integer seconds field and no
   * PAX header is written unless the name needs one (tarfile with an int). */
  int float_mtime;
} sdw_tar_writer_options;

/* Starts path (written to a temporary and renamed on close). *out owned by
 * the caller: sdw_tar_writer_close or sdw_tar_writer_abort frees it. */
sdw_status sdw_tar_writer_open(const char *path, sdw_tar_writer **out);
/* The same with explicit options (NULL: the defaults). */
sdw_status sdw_tar_writer_open_options(const char *path, const sdw_tar_writer_options *options,
                                       sdw_tar_writer **out);
/* Adds a regular file member. name: relative, no "." or ".." components, no
 * NUL; a name longer than 100 bytes or not ASCII goes in a PAX "path" record
 * (the ustar name field then holds its first 100 bytes, non-ASCII bytes as
 * '?'), exactly as tarfile's PAX format does. mtime in seconds since the
 * epoch (img2dataset uses the current time: see float_mtime). Members of 8 GiB
 * or more get a PAX "size" record. SDW_ERR_INVALID_ARGUMENT for a bad name,
 * SDW_ERR_IO when writing fails (the writer must then still be aborted). */
sdw_status sdw_tar_writer_add(sdw_tar_writer *w, const char *name, const void *data, size_t size,
                              double mtime);
/* Bytes of the archive so far (headers, data and padding). */
uint64_t sdw_tar_writer_size(const sdw_tar_writer *w);
/* Writes the two zero blocks, pads to the 10240-byte record as tarfile does,
 * fsyncs and renames into place; frees w whatever happens. */
sdw_status sdw_tar_writer_close(sdw_tar_writer *w);
/* Removes the temporary and frees w (NULL is a no-op). */
void sdw_tar_writer_abort(sdw_tar_writer *w);

/* --- reading ---------------------------------------------------------------------- */
typedef struct sdw_tar_reader sdw_tar_reader;

typedef struct sdw_tar_member {
  const char *name; /* relative path (PAX path / GNU longname applied, leading "./"
                       removed); valid until the next sdw_tar_reader_next or close */
  const void *data; /* size bytes inside the mapping, valid until close */
  size_t size;
  int64_t mtime;   /* seconds (a PAX mtime is floored) */
  uint64_t offset; /* offset of the data in the archive */
  char type;       /* '0' (regular; '\0' and '7' are reported as '0') */
} sdw_tar_member;

/* Maps path read-only. *out owned by the caller (sdw_tar_reader_close). */
sdw_status sdw_tar_reader_open(const char *path, sdw_tar_reader **out);
/* Reads size bytes at data in place: data must stay valid and unchanged until
 * sdw_tar_reader_close. name is used in messages (copied). */
sdw_status sdw_tar_reader_open_memory(const void *data, size_t size, const char *name,
                                      sdw_tar_reader **out);
/* Next regular-file member; *done set (and member untouched) at the end: the
 * first zero block or the end of the data on a block boundary. Symlinks, hard
 * links, devices, FIFOs, directories, GNU sparse and unknown types are
 * skipped. SDW_ERR_FORMAT (a corrupt or hostile archive; every later call
 * fails the same way): an absolute name or one with a ".." component (on any
 * member, skipped ones included), a bad header checksum, a malformed numeric
 * field, a size past the end, a truncated header, a malformed PAX record. */
sdw_status sdw_tar_reader_next(sdw_tar_reader *r, sdw_tar_member *member, int *done);
void sdw_tar_reader_close(sdw_tar_reader *r);

#ifdef __cplusplus
}
#endif
#endif
