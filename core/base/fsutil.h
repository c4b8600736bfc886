/* File-system helpers: atomic replacement of files, whole-file reads, mkdir -p.
 *
 * Atomic writing: the bytes go to a temporary file in the target's directory
 * (".<name>.tmp.<pid>"), which is fsync'd, renamed over the target and then
 * the directory is fsync'd. A reader therefore sees either the old file or
 * the complete new one, also after a crash or power loss. On any failure the
 * temporary file is removed, the old target is left untouched and the call
 * returns SDW_ERR_IO with a message naming the file and the errno text.
 *
 * The temporary name contains the process id, so two processes can write the
 * same target concurrently (the last rename wins); two threads of one process
 * must not write the same target at the same time. The new file gets mode
 * 0666 & ~umask, like fopen(path, "w").
 *
 * No dependency beyond libc (the fuzz build links core/base alone).
 */
#ifndef SDW_BASE_FSUTIL_H
#define SDW_BASE_FSUTIL_H

#include <stddef.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Replaces path with exactly size bytes of data (data may be NULL when size
 * is 0). */
sdw_status sdw_atomic_write(const char *path, const void *data, size_t size);

/* The streaming form, for outputs too large to assemble in memory:
 *
 *   sdw_atomic_file *f;
 *   SDW_TRY(sdw_atomic_file_open(path, &f));
 *   if ((st = sdw_atomic_file_write(f, a, na)) != SDW_OK) { sdw_atomic_file_abort(f); return st; }
 *   ...
 *   return sdw_atomic_file_commit(f);
 *
 * The handle is owned by the caller until it is passed to _commit or _abort,
 * which both free it whatever happens. After a failed _write the handle
 * stays valid and must still be passed to _abort (or _commit, which then
 * returns the write's error and removes the temporary file). */
typedef struct sdw_atomic_file sdw_atomic_file;

sdw_status sdw_atomic_file_open(const char *path, sdw_atomic_file **out);
sdw_status sdw_atomic_file_write(sdw_atomic_file *f, const void *data, size_t size);
/* Bytes written so far. */
size_t sdw_atomic_file_size(const sdw_atomic_file *f);
/* fsync, rename over the target, fsync the directory; frees f. */
sdw_status sdw_atomic_file_commit(sdw_atomic_file *f);
/* Removes the temporary file and frees f; the target is untouched. NULL is a
 * no-op. */
void sdw_atomic_file_abort(sdw_atomic_file *f);

/* Reads the whole file into *data (malloc'd, owned by the caller: free()).
 * One extra '\0' byte follows the contents (not counted in *size), so text
 * can be parsed in place. SDW_ERR_NOT_FOUND when the file does not exist,
 * SDW_ERR_IO for other failures (a directory, a read error). */
sdw_status sdw_read_file(const char *path, void **data, size_t *size);

/* The regular files in dir whose names end with suffix (hidden names,
 * starting with '.', are left out), sorted by name. *names is an array of
 * *count malloc'd names, owned by the caller: sdw_list_files_free.
 * SDW_ERR_NOT_FOUND when dir cannot be opened. */
sdw_status sdw_list_files(const char *dir, const char *suffix, char ***names, int *count);
void sdw_list_files_free(char **names, int count);

/* Creates path and its missing parents (mode 0777 & ~umask), like mkdir -p.
 * An existing directory is fine; an existing non-directory is SDW_ERR_IO. */
sdw_status sdw_mkdir_p(const char *path);

#ifdef __cplusplus
}
#endif
#endif
