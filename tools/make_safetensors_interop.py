#!/usr/bin/env python3
"""Writes tests/data/safetensors/interop.safetensors with the REAL safetensors
package (the Rust implementation behind `pip install safetensors`), so that
tests/test_safetensors.c checks our reader against files we did not write.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install safetensors numpy
    /tmp/st/bin/python tools/make_safetensors_interop.py

(The committed file was made with safetensors 0.8.0 and numpy 2.4.6.)

Every value below is restated in tests/test_safetensors.c (test
safetensors_interop_python); change both together. Note that the package
orders tensors by dtype alignment and then name, not by insertion order.
"""
import os
import sys

import numpy as np
import safetensors
from safetensors import serialize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                   "safetensors", "interop.safetensors")

KEEP_ALIVE = []  # arrays whose memory the package reads through raw pointers


def spec(dtype, array):
    """One tensor from the raw little-endian bytes of a numpy array, under the
    package's dtype name (works for dtypes numpy lacks, such as bfloat16)."""
    array = array.astype(array.dtype.newbyteorder("<"), order="C")  # copies; keeps 0-d as 0-d
    KEEP_ALIVE.append(array)
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.7
        return safetensors.TensorSpec(dtype=dtype, shape=list(array.shape),
                                      data_ptr=array.ctypes.data, data_len=array.nbytes)
    names = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
             "int32": "I32", "uint8": "U8", "bool": "BOOL", "float64": "F64"}
    return {"dtype": names[dtype], "shape": list(array.shape), "data": array.tobytes()}


def main():
    f32 = np.array([[0.0, 1.0, -2.5], [3.25, 1e-3, -1e30]], dtype=np.float32)  # F32 [2, 3]
    f16 = np.array([1.0, -0.5, 65504.0, 5.9604645e-08], dtype=np.float16)       # F16 [4]
    # BF16 [2, 2] as bit patterns: 1.0, -2.0, 0.5, 3.140625
    bf16_bits = np.array([[0x3F80, 0xC000], [0x3F00, 0x4049]], dtype=np.uint16)
    i64 = np.array([-(2**62), -1, 0, 2**40 + 7], dtype=np.int64)                # I64 [4]
    i32 = np.array([[-2147483648], [2147483647], [12345]], dtype=np.int32)      # I32 [3, 1]
    u8 = np.array([0, 1, 127, 128, 255], dtype=np.uint8)                        # U8 [5]
    boolean = np.array([True, False, True], dtype=np.bool_)                     # BOOL [3]
    scalar = np.array(7.5, dtype=np.float64)                                    # F64 []
    empty = np.zeros((0, 3), dtype=np.float32)                                  # F32 [0, 3]

    tensors = {
        "weights.f32": spec("float32", f32),
        "weights.f16": spec("float16", f16),
        "weights.bf16": spec("bfloat16", bf16_bits),
        "ids.i64": spec("int64", i64),
        "ids.i32": spec("int32", i32),
        "bytes.u8": spec("uint8", u8),
        "mask.bool": spec("bool", boolean.view(np.uint8)),
        "scalar.f64": spec("float64", scalar),
        "empty.f32": spec("float32", empty),
    }
    metadata = {"format": "pt", "source": "tools/make_safetensors_interop.py",
                "unicode": "caf\u00e9 \u2713"}
    data = bytes(serialize(tensors, metadata=metadata))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(data)
    print(f"wrote {os.path.normpath(OUT)} ({len(data)} bytes) with safetensors "
          f"{safetensors.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
