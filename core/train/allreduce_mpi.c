/* The MPI engine: libmpi loaded at run time, so sdw builds without MPI
 * headers and runs on machines without MPI.
 *
 * MPI has no standard ABI. Two are supported:
 *  - Open MPI (libmpi.so.40, 3.x/4.x/5.x): handles are pointers to global
 *    objects of the library, MPI_COMM_WORLD = &ompi_mpi_comm_world,
 *    MPI_FLOAT = &ompi_mpi_float, MPI_SUM = &ompi_mpi_op_sum, ... (mpi.h's
 *    OMPI_PREDEFINED_GLOBAL), so they are dlsym'd. Tested here with 4.1.
 *  - MPICH and its ABI family (libmpich.so.12 / libmpi.so.12: MPICH, Intel
 *    MPI, MVAPICH): handles are int constants from MPICH's mpi.h
 *    (MPI_COMM_WORLD 0x44000000, MPI_FLOAT 0x4c00040a, MPI_DOUBLE 0x4c00080b,
 *    MPI_BYTE 0x4c00010d, MPI_SUM 0x58000003). Not tested on this machine
 *    (no MPICH installed).
 * The ABI is told by MPI_Get_library_version (callable before MPI_Init);
 * any other library is refused with a message. SDW_MPI_LIB names the
 * library file to load instead of the defaults.
 *
 * RTLD_GLOBAL: Open MPI dlopens its own plugins (mca_*.so), which resolve
 * symbols of libmpi/libopen-pal from the global namespace.
 *
 * MPI is initialised once per process (MPI_THREAD_SERIALIZED requested: the
 * trainer calls from one thread at a time) and finalised at exit, because
 * MPI cannot be initialised again after MPI_Finalize; a process exiting
 * with a non-zero status aborts the whole job instead (see mpi_on_exit).
 *
 * Determinism: MPI_Allreduce's result is the same on every rank for Open
 * MPI's algorithms (tuned: recursive doubling, ring, Rabenseifner; all
 * combine commutative float additions so each rank forms the same sums, and
 * the choice depends only on world size and message size, which all ranks
 * share). The allreduce-check component verifies the bits across ranks.
 */
#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/train/allreduce_impl.h"

/* MPI constants identical in Open MPI and MPICH. */
enum { MPI_SUCCESS_ = 0, MPI_THREAD_SERIALIZED_ = 2, LIBRARY_VERSION_MAX = 8192 };

typedef enum mpi_abi { ABI_OPENMPI, ABI_MPICH } mpi_abi;

/* Open MPI: every handle is a pointer. */
typedef void *ompi_handle;
typedef struct ompi_fns {
  int (*comm_rank)(ompi_handle comm, int *rank);
  int (*comm_size)(ompi_handle comm, int *size);
  int (*allreduce)(const void *send, void *recv, int count, ompi_handle type, ompi_handle op,
                   ompi_handle comm);
  int (*bcast)(void *buf, int count, ompi_handle type, int root, ompi_handle comm);
  int (*barrier)(ompi_handle comm);
  int (*abort)(ompi_handle comm, int code);
  ompi_handle comm_world, type_float, type_double, type_byte, op_sum;
} ompi_fns;

/* MPICH: every handle is an int. */
typedef struct mpich_fns {
  int (*comm_rank)(int comm, int *rank);
  int (*comm_size)(int comm, int *size);
  int (*allreduce)(const void *send, void *recv, int count, int type, int op, int comm);
  int (*bcast)(void *buf, int count, int type, int root, int comm);
  int (*barrier)(int comm);
  int (*abort)(int comm, int code);
} mpich_fns;

enum { MPICH_COMM_WORLD = 0x44000000, MPICH_FLOAT = 0x4c00040a, MPICH_DOUBLE = 0x4c00080b };
enum { MPICH_BYTE = 0x4c00010d, MPICH_SUM = 0x58000003 };

typedef struct mpi_state {
  void *lib;
  mpi_abi abi;
  ompi_fns o;
  mpich_fns m;
  int (*finalize)(void);
  int (*finalized)(int *flag);
  int rank, world;
  int we_initialised;
} mpi_state;

/* One per process: MPI itself is a per-process singleton. */
static mpi_state g_mpi;
static int g_mpi_ready;

typedef enum dtype { DT_FLOAT, DT_DOUBLE, DT_BYTE } dtype;

/* Elements per MPI call: counts are int. */
enum { CHUNK = 1 << 28 };

static sdw_status mpi_check(int rc, const char *what) {
  if (rc == MPI_SUCCESS_) return SDW_OK;
  return sdw_fail(SDW_ERR_IO, "mpi: %s failed (MPI error %d)", what, rc);
}

static int mpi_allreduce_sum(void *buf, int count, dtype t) {
  if (g_mpi.abi == ABI_OPENMPI) {
    ompi_handle ty = t == DT_FLOAT ? g_mpi.o.type_float : g_mpi.o.type_double;
    /* MPI_IN_PLACE is ((void *)1) in Open MPI */
    return g_mpi.o.allreduce((const void *)1, buf, count, ty, g_mpi.o.op_sum, g_mpi.o.comm_world);
  }
  int ty = t == DT_FLOAT ? MPICH_FLOAT : MPICH_DOUBLE;
  /* MPI_IN_PLACE is ((void *)-1) in MPICH */
  return g_mpi.m.allreduce((const void *)-1, buf, count, ty, MPICH_SUM, MPICH_COMM_WORLD);
}

static sdw_status mpi_sum_f32(void *impl, float *buf, int64_t n) {
  (void)impl;
  for (int64_t i = 0; i < n; i += CHUNK) {
    int count = (int)(n - i < CHUNK ? n - i : CHUNK);
    SDW_TRY(mpi_check(mpi_allreduce_sum(buf + i, count, DT_FLOAT), "MPI_Allreduce"));
  }
  return SDW_OK;
}

static sdw_status mpi_sum_f64(void *impl, double *buf, int64_t n) {
  (void)impl;
  for (int64_t i = 0; i < n; i += CHUNK) {
    int count = (int)(n - i < CHUNK ? n - i : CHUNK);
    SDW_TRY(mpi_check(mpi_allreduce_sum(buf + i, count, DT_DOUBLE), "MPI_Allreduce"));
  }
  return SDW_OK;
}

static sdw_status mpi_broadcast(void *impl, void *buf, size_t bytes, int root) {
  (void)impl;
  char *p = buf;
  for (size_t i = 0; i < bytes; i += CHUNK) {
    int count = (int)(bytes - i < CHUNK ? bytes - i : CHUNK);
    int rc = g_mpi.abi == ABI_OPENMPI
                 ? g_mpi.o.bcast(p + i, count, g_mpi.o.type_byte, root, g_mpi.o.comm_world)
                 : g_mpi.m.bcast(p + i, count, MPICH_BYTE, root, MPICH_COMM_WORLD);
    SDW_TRY(mpi_check(rc, "MPI_Bcast"));
  }
  return SDW_OK;
}

static sdw_status mpi_barrier(void *impl) {
  (void)impl;
  int rc = g_mpi.abi == ABI_OPENMPI ? g_mpi.o.barrier(g_mpi.o.comm_world)
                                    : g_mpi.m.barrier(MPICH_COMM_WORLD);
  return mpi_check(rc, "MPI_Barrier");
}

static void mpi_destroy(void *impl) {
  (void)impl; /* MPI stays up until exit (see the top comment) */
}

static const sdw_allreduce_ops mpi_ops = {
    .name = "mpi",
    .sum_f32 = mpi_sum_f32,
    .sum_f64 = mpi_sum_f64,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .destroy = mpi_destroy,
};

/* At exit: MPI_Finalize after success and after an orderly stop on SIGINT
 * or SIGTERM (status 130 / 143: every rank stops together and rank 0 may
 * still be writing its checkpoint, which MPI_Finalize waits for); after a
 * failure MPI_Abort, which ends every rank (the others may be waiting in a
 * collective for this one, and MPI_Finalize would wait for them: the job
 * would hang). */
static void mpi_on_exit(int status, void *arg) {
  (void)arg;
  int done = 0;
  if (!g_mpi.finalized || g_mpi.finalized(&done) != MPI_SUCCESS_ || done) return;
  if (status == 0 || status == 128 + SIGINT || status == 128 + SIGTERM) {
    g_mpi.finalize();
  } else {
    fflush(stdout);
    fflush(stderr);
    if (g_mpi.abi == ABI_OPENMPI)
      g_mpi.o.abort(g_mpi.o.comm_world, status);
    else
      g_mpi.m.abort(MPICH_COMM_WORLD, status);
  }
}

/* dlsym into *slot (a function or object pointer); a message naming the
 * symbol when absent. */
static sdw_status mpi_sym(const char *lib, const char *name, void **slot) {
  dlerror();
  *slot = dlsym(g_mpi.lib, name);
  if (!*slot)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "mpi: %s has no symbol %s (not an MPI library?)", lib,
                    name);
  return SDW_OK;
}

/* Function pointers through void*: POSIX guarantees dlsym's result converts. */
#define MPI_FN(lib, name, field)                                                                   \
  do {                                                                                             \
    void *fn_;                                                                                     \
    SDW_TRY(mpi_sym(lib, name, &fn_));                                                             \
    memcpy(&(field), &fn_, sizeof fn_);                                                            \
  } while (0)

static sdw_status mpi_load(void) {
  const char *env = getenv("SDW_MPI_LIB");
  static const char *const defaults[] = {"libmpi.so.40", "libmpich.so.12", "libmpi.so.12"};
  const char *lib = NULL;
  if (env && *env) {
    lib = env;
    g_mpi.lib = dlopen(env, RTLD_NOW | RTLD_GLOBAL);
    if (!g_mpi.lib)
      return sdw_fail(SDW_ERR_UNSUPPORTED, "mpi: cannot load SDW_MPI_LIB=%s: %s", env, dlerror());
  } else {
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0] && !g_mpi.lib; i++) {
      lib = defaults[i];
      g_mpi.lib = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
    }
    if (!g_mpi.lib)
      return sdw_fail(SDW_ERR_UNSUPPORTED,
                      "mpi: no MPI library found (libmpi.so.40 of Open MPI, or libmpich.so.12); "
                      "install Open MPI (Debian: openmpi-bin libopenmpi3) or set SDW_MPI_LIB");
  }

  int (*get_version)(char *version, int *len);
  MPI_FN(lib, "MPI_Get_library_version", get_version);
  char *version = calloc(LIBRARY_VERSION_MAX, 1);
  if (!version) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "mpi: out of host memory");
  int len = 0;
  get_version(version, &len);
  int is_ompi = strstr(version, "Open MPI") != NULL;
  int is_mpich = strstr(version, "MPICH") != NULL || strstr(version, "Intel(R) MPI") != NULL ||
                 strstr(version, "MVAPICH") != NULL;
  if (!is_ompi && !is_mpich) {
    char head[80];
    snprintf(head, sizeof head, "%s", version);
    for (char *c = head; *c; c++)
      if (*c == '\n' || *c == '\r') *c = ' ';
    free(version);
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "mpi: %s is '%s': only the Open MPI and MPICH ABIs are supported", lib, head);
  }
  free(version);
  g_mpi.abi = is_ompi ? ABI_OPENMPI : ABI_MPICH;

  MPI_FN(lib, "MPI_Finalize", g_mpi.finalize);
  MPI_FN(lib, "MPI_Finalized", g_mpi.finalized);
  if (g_mpi.abi == ABI_OPENMPI) {
    MPI_FN(lib, "MPI_Comm_rank", g_mpi.o.comm_rank);
    MPI_FN(lib, "MPI_Comm_size", g_mpi.o.comm_size);
    MPI_FN(lib, "MPI_Allreduce", g_mpi.o.allreduce);
    MPI_FN(lib, "MPI_Bcast", g_mpi.o.bcast);
    MPI_FN(lib, "MPI_Barrier", g_mpi.o.barrier);
    MPI_FN(lib, "MPI_Abort", g_mpi.o.abort);
    SDW_TRY(mpi_sym(lib, "ompi_mpi_comm_world", &g_mpi.o.comm_world));
    SDW_TRY(mpi_sym(lib, "ompi_mpi_float", &g_mpi.o.type_float));
    SDW_TRY(mpi_sym(lib, "ompi_mpi_double", &g_mpi.o.type_double));
    SDW_TRY(mpi_sym(lib, "ompi_mpi_byte", &g_mpi.o.type_byte));
    SDW_TRY(mpi_sym(lib, "ompi_mpi_op_sum", &g_mpi.o.op_sum));
  } else {
    MPI_FN(lib, "MPI_Comm_rank", g_mpi.m.comm_rank);
    MPI_FN(lib, "MPI_Comm_size", g_mpi.m.comm_size);
    MPI_FN(lib, "MPI_Allreduce", g_mpi.m.allreduce);
    MPI_FN(lib, "MPI_Bcast", g_mpi.m.bcast);
    MPI_FN(lib, "MPI_Barrier", g_mpi.m.barrier);
    MPI_FN(lib, "MPI_Abort", g_mpi.m.abort);
  }

  int (*initialized)(int *flag);
  int (*init_thread)(int *argc, char ***argv, int required, int *provided);
  MPI_FN(lib, "MPI_Initialized", initialized);
  MPI_FN(lib, "MPI_Init_thread", init_thread);
  int done = 0, up = 0;
  SDW_TRY(mpi_check(g_mpi.finalized(&done), "MPI_Finalized"));
  if (done) return sdw_fail(SDW_ERR_UNSUPPORTED, "mpi: MPI was finalised in this process already");
  SDW_TRY(mpi_check(initialized(&up), "MPI_Initialized"));
  if (!up) {
    int provided = 0;
    SDW_TRY(
        mpi_check(init_thread(NULL, NULL, MPI_THREAD_SERIALIZED_, &provided), "MPI_Init_thread"));
    g_mpi.we_initialised = 1;
    on_exit(mpi_on_exit, NULL);
  }
  int rc = g_mpi.abi == ABI_OPENMPI ? g_mpi.o.comm_rank(g_mpi.o.comm_world, &g_mpi.rank)
                                    : g_mpi.m.comm_rank(MPICH_COMM_WORLD, &g_mpi.rank);
  SDW_TRY(mpi_check(rc, "MPI_Comm_rank"));
  rc = g_mpi.abi == ABI_OPENMPI ? g_mpi.o.comm_size(g_mpi.o.comm_world, &g_mpi.world)
                                : g_mpi.m.comm_size(MPICH_COMM_WORLD, &g_mpi.world);
  SDW_TRY(mpi_check(rc, "MPI_Comm_size"));
  return SDW_OK;
}

sdw_status sdw_allreduce_mpi_open(const sdw_allreduce_ops **engine, void **impl, int *rank,
                                  int *world) {
  if (!g_mpi_ready) {
    sdw_status st = mpi_load();
    if (st != SDW_OK) {
      /* keep the library loaded when MPI is up (it cannot be unloaded then) */
      if (g_mpi.lib && !g_mpi.we_initialised) dlclose(g_mpi.lib);
      if (!g_mpi.we_initialised) memset(&g_mpi, 0, sizeof g_mpi);
      return st;
    }
    g_mpi_ready = 1;
  }
  *engine = &mpi_ops;
  *impl = NULL;
  *rank = g_mpi.rank;
  *world = g_mpi.world;
  return SDW_OK;
}
