/* Arenas: bump allocators with a lifetime.
 *
 * sdw allocates by lifetime, not by object: weights, gradients and optimizer
 * state live as long as the model; activations are reset every step; op
 * scratch is reset after every op (mark / reset_to). An arena reserves
 * address space up front (so pointers never move) and the kernel commits
 * pages as they are touched. The arena owns all memory it hands out; freeing
 * happens only through reset or destroy.
 */
#ifndef SDW_BASE_ARENA_H
#define SDW_BASE_ARENA_H

#include <stddef.h>

#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_arena sdw_arena;

enum { SDW_ARENA_ALIGN = 64 };

/* Reserves capacity bytes of address space; *out is owned by the caller
 * (sdw_arena_destroy). name is used in error messages. */
sdw_status sdw_arena_create(sdw_arena **out, const char *name, size_t capacity);
void sdw_arena_destroy(sdw_arena *arena);

/* 64-byte aligned, uninitialised. NULL (with sdw_fail OUT_OF_MEMORY recorded)
 * when the reservation is exhausted. */
void *sdw_arena_alloc(sdw_arena *arena, size_t bytes);
/* Same, zero-filled. */
void *sdw_arena_calloc(sdw_arena *arena, size_t bytes);
/* A CPU tensor of the given shape from the arena (uninitialised). */
sdw_status sdw_arena_tensor(sdw_arena *arena, sdw_tensor *out, sdw_dtype dtype, int ndim,
                            const int64_t *shape);

size_t sdw_arena_mark(const sdw_arena *arena);
void sdw_arena_reset_to(sdw_arena *arena, size_t mark);
void sdw_arena_reset(sdw_arena *arena);

size_t sdw_arena_used(const sdw_arena *arena);
size_t sdw_arena_peak(const sdw_arena *arena);
size_t sdw_arena_capacity(const sdw_arena *arena);

#ifdef __cplusplus
}
#endif
#endif
