/* PyTorch checkpoints (torch.save, zip format, PyTorch >= 1.6) read WITHOUT
 * executing anything: a restricted unpickler that builds a small value tree.
 *
 * The container (core/base/zip_reader.h) holds "<archive>/data.pkl" (a
 * pickle, protocol 2 from torch.save) and one entry "<archive>/data/<key>"
 * per storage; <archive> is the first entry's top folder, whatever its
 * name. "<archive>/byteorder", when present, must say "little".
 *
 * The unpickler interprets the opcodes pickle protocols 2-5 use for plain
 * data (PROTO, FRAME, STOP, MARK, POP, POP_MARK, DUP, NONE, NEWTRUE/FALSE,
 * BININT/BININT1/BININT2, LONG1/LONG4 up to 64 bits, BINFLOAT, BINUNICODE /
 * SHORT_BINUNICODE / BINUNICODE8, BINSTRING / SHORT_BINSTRING, BINBYTES /
 * SHORT_BINBYTES / BINBYTES8, EMPTY_TUPLE, TUPLE, TUPLE1-3, EMPTY_LIST, LIST,
 * APPEND(S), EMPTY_DICT, DICT, SETITEM(S), BINPUT / LONG_BINPUT / MEMOIZE,
 * BINGET / LONG_BINGET, GLOBAL / STACK_GLOBAL, REDUCE, BUILD, BINPERSID).
 * Anything else (INST, OBJ, NEWOBJ, EXT*, text-protocol opcodes, ...) is
 * SDW_ERR_FORMAT. GLOBAL and STACK_GLOBAL only resolve these names, and
 * only to data (nothing is ever called or imported):
 *   collections.OrderedDict            REDUCE with () -> an empty dict
 *                                      (BUILD on it, the _metadata of a
 *                                      state_dict, is ignored)
 *   torch._utils._rebuild_tensor_v2    REDUCE (storage, offset, size,
 *                                      stride, requires_grad, hooks[,
 *                                      metadata]) -> a tensor
 *   torch._utils._rebuild_parameter    REDUCE (tensor, requires_grad,
 *   torch._utils._rebuild_parameter_with_state  hooks[, state]) -> it
 *   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage
 *                                      only as the storage type inside a
 *                                      persistent id
 * Any other global is refused with SDW_ERR_FORMAT:
 *   "<file>: refuses to load: the pickle asks for 'os.system' (only
 *    tensors, dicts, lists, numbers and strings are allowed)"
 * (torch.storage._load_from_bytes included: it would unpickle again).
 *
 * A persistent id ('storage', <storage type>, key, location, numel) names
 * the entry "<archive>/data/<key>", which must hold at least numel elements
 * of the type; the location ("cpu", "cuda:0", ...) is ignored: everything
 * is read on the host. A tensor's size, stride and offset are checked
 * against its storage when the tensor is built (non-negative, no overflow,
 * every addressed element inside the storage), so reading one can never
 * leave the storage. Strides are honoured (the seed saves channels_last
 * convolution weights): sdw_pt_tensor_read gathers into row-major order.
 *
 * Limits against hostile files (SDW_ERR_FORMAT when exceeded): the pickle
 * at most SDW_PT_MAX_PICKLE bytes, SDW_PT_MAX_VALUES values, SDW_PT_MAX_ITEMS
 * container items in all, memo indices below SDW_PT_MAX_MEMO, SDW_PT_MAX_MARKS
 * open MARKs, SDW_MAX_DIMS tensor dims. Values may be shared (BINGET) and a
 * hostile pickle can even build cycles (a list appended to itself): walk
 * the tree with a depth bound, as every function here does.
 *
 * The tree, its strings and the storages are owned by the sdw_pt handle and
 * valid until sdw_pt_close. Not thread-safe (storages are loaded and
 * CRC-checked on first use).
 */
#ifndef SDW_BASE_TORCH_PICKLE_H
#define SDW_BASE_TORCH_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDW_PT_MAX_PICKLE ((size_t)256 << 20)
#define SDW_PT_MAX_VALUES ((size_t)4 << 20)
#define SDW_PT_MAX_ITEMS  ((size_t)16 << 20)
#define SDW_PT_MAX_MEMO   ((size_t)4 << 20)
#define SDW_PT_MAX_MARKS  ((size_t)1 << 16)

typedef struct sdw_pt sdw_pt;
typedef struct sdw_pt_storage sdw_pt_storage;
typedef struct sdw_pt_value sdw_pt_value;

typedef enum sdw_pt_kind {
  SDW_PT_NONE = 0,
  SDW_PT_BOOL,
  SDW_PT_INT,
  SDW_PT_FLOAT,
  SDW_PT_STR,   /* text (UTF-8 as pickled) */
  SDW_PT_BYTES, /* BINBYTES / BINSTRING */
  SDW_PT_TUPLE,
  SDW_PT_LIST,
  SDW_PT_DICT, /* dict or OrderedDict, in insertion order */
  SDW_PT_TENSOR,
  SDW_PT_STORAGE, /* a persistent id that no tensor used */
  SDW_PT_GLOBAL,  /* an allowed global that was not used up (a storage type) */
  SDW_PT_KIND_COUNT
} sdw_pt_kind;

/* A tensor: a strided view of a storage (all checked at build time). */
typedef struct sdw_pt_tensor {
  sdw_dtype dtype;
  int ndim;
  int64_t shape[SDW_MAX_DIMS];
  int64_t stride[SDW_MAX_DIMS]; /* in elements */
  int64_t offset;               /* storage offset, in elements */
  int64_t numel;                /* product of shape (1 for a 0-dim tensor) */
  bool requires_grad;
  sdw_pt_storage *storage;
} sdw_pt_tensor;

/* A value of the tree. Read-only for users. */
struct sdw_pt_value {
  sdw_pt_kind kind;
  union {
    bool b;    /* BOOL */
    int64_t i; /* INT */
    double f;  /* FLOAT */
    struct {
      const char *data; /* NUL-terminated (the bytes may hold NULs too) */
      size_t len;
    } str; /* STR, BYTES */
    struct {
      sdw_pt_value **items;
      size_t count, cap;
    } seq; /* TUPLE, LIST */
    struct {
      sdw_pt_value **keys, **values;
      size_t count, cap;
      size_t *index, index_cap; /* internal: hash index over keys */
    } dict;                     /* DICT (a later SETITEM of an existing key replaces its value) */
    sdw_pt_tensor tensor;       /* TENSOR */
    sdw_pt_storage *storage;    /* STORAGE */
    int global;                 /* GLOBAL: internal id */
  } u;
};

/* Opens a torch.save zip checkpoint (memory-mapped) and unpickles its
 * data.pkl. *out is owned by the caller (sdw_pt_close). SDW_ERR_NOT_FOUND /
 * SDW_ERR_IO for the file, SDW_ERR_FORMAT for a malformed or refused one
 * (a legacy pre-1.6 torch file is named as such), SDW_ERR_UNSUPPORTED for a
 * big-endian one. */
sdw_status sdw_pt_open(const char *path, sdw_pt **out);
/* The same over size bytes of a zip at data (not copied: they must outlive
 * the handle); name is used in messages. */
sdw_status sdw_pt_open_memory(const void *data, size_t size, const char *name, sdw_pt **out);
/* A bare pickle stream (no zip): for tests and fuzzing. A persistent id is
 * SDW_ERR_FORMAT (there are no storages). */
sdw_status sdw_pt_parse_pickle(const void *data, size_t size, const char *name, sdw_pt **out);
/* Frees everything; NULL is a no-op. */
void sdw_pt_close(sdw_pt *f);

/* The name given at open (for messages). */
const char *sdw_pt_name(const sdw_pt *f);
/* The unpickled object. */
const sdw_pt_value *sdw_pt_root(const sdw_pt *f);

/* "dict", "tensor", ... */
const char *sdw_pt_kind_name(sdw_pt_kind kind);

/* Dict lookups (NULL when d is not a dict or has no such key). Keys compare
 * as Python does for these types: str with str, int with int (a bool key is
 * an int). */
const sdw_pt_value *sdw_pt_dict_get(const sdw_pt_value *d, const char *key);
const sdw_pt_value *sdw_pt_dict_get_int(const sdw_pt_value *d, int64_t key);

/* Number conversions: false when v is not an int (bool counts) / not a
 * number. */
bool sdw_pt_as_int(const sdw_pt_value *v, int64_t *out);
bool sdw_pt_as_double(const sdw_pt_value *v, double *out);
/* The string of a STR value, NULL otherwise. */
const char *sdw_pt_as_str(const sdw_pt_value *v);
/* The tensor of a TENSOR value, NULL otherwise. */
const sdw_pt_tensor *sdw_pt_as_tensor(const sdw_pt_value *v);

/* Bytes of the tensor's data (numel * element size; fits size_t, checked at
 * build time). */
size_t sdw_pt_tensor_nbytes(const sdw_pt_tensor *t);
/* True when the strides are row-major (dims of size 1 may have any stride). */
bool sdw_pt_tensor_is_contiguous(const sdw_pt_tensor *t);
/* The storage's key ("0", "158", ...) and its entry name, for messages. */
const char *sdw_pt_tensor_key(const sdw_pt_tensor *t);

/* Copies the tensor's elements in row-major order into dst (exactly
 * sdw_pt_tensor_nbytes bytes, little-endian, its own dtype), gathering
 * through the strides. The first use of a storage reads and CRC-checks its
 * entry. SDW_ERR_INVALID_ARGUMENT when dst_size differs. */
sdw_status sdw_pt_tensor_read(sdw_pt *f, const sdw_pt_tensor *t, void *dst, size_t dst_size);
/* Zero-copy access for a contiguous tensor: *data points at its bytes in the
 * mapping (no alignment guarantee). SDW_ERR_UNSUPPORTED when it is not
 * contiguous (use sdw_pt_tensor_read). */
sdw_status sdw_pt_tensor_data(sdw_pt *f, const sdw_pt_tensor *t, const void **data);

/* Path-style description of a value's kind for messages: "a dict of 3", "a
 * tensor F32 [4, 4]", "an int". Writes into buf. */
const char *sdw_pt_describe(const sdw_pt_value *v, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
