#!/usr/bin/python3
"""Writes the small .npy and safetensors fixtures read by spec/io_spec.lua.

Run with Debian's python (numpy only): /usr/bin/python3 tools/make_fixtures_arrays_weights.py
Output: spec/fixtures/io/*.npy, spec/fixtures/io/dtypes.safetensors.

Every array holds v[k] = k * 0.25 - 1 (k = 0, 1, ... in C order; integer arrays hold k - 2
or k for unsigned), values exact in every dtype, so the spec computes the expectation itself.
The safetensors file is written here with json + struct only (no safetensors package),
which is also a check that we follow the format description and not one implementation.
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "fixtures", "io")
os.makedirs(OUT, exist_ok=True)


def floats(shape, dtype):
    n = int(np.prod(shape))
    return (np.arange(n) * 0.25 - 1).reshape(shape).astype(dtype)


def ints(shape, dtype, unsigned=False):
    n = int(np.prod(shape))
    return (np.arange(n) - (0 if unsigned else 2)).reshape(shape).astype(dtype)


# ---- .npy ----
np.save(os.path.join(OUT, "f32.npy"), floats((2, 3), "<f4"))
np.save(os.path.join(OUT, "f64.npy"), floats((2, 3), "<f8"))
np.save(os.path.join(OUT, "f16.npy"), floats((2, 3), "<f2"))
np.save(os.path.join(OUT, "f32_be.npy"), floats((2, 3), ">f4"))
np.save(os.path.join(OUT, "i32.npy"), ints((2, 3), "<i4"))
np.save(os.path.join(OUT, "i64.npy"), ints((2, 3), "<i8"))
np.save(os.path.join(OUT, "u8.npy"), ints((2, 3), "u1", unsigned=True))
np.save(os.path.join(OUT, "scalar.npy"), np.array(3.5, dtype="<f4"))
np.save(os.path.join(OUT, "vec.npy"), floats((5,), "<f4"))
# Fortran order: the logical array is floats((3, 4)); its bytes are column-major.
np.save(os.path.join(OUT, "f32_fortran.npy"), np.asfortranarray(floats((3, 4), "<f4")))
np.save(os.path.join(OUT, "f32_3d.npy"), np.asfortranarray(floats((2, 3, 4), "<f8")))

# ---- safetensors: one tensor per dtype, shape (2, 3) ----
def bf16_bytes(a):
    u = np.asarray(a, dtype="<f4").view("<u4") >> 16  # exact for these values
    return u.astype("<u2").tobytes()


tensors = {
    "f32": ("F32", floats((2, 3), "<f4").tobytes()),
    "f16": ("F16", floats((2, 3), "<f2").tobytes()),
    "bf16": ("BF16", bf16_bytes(floats((2, 3), "<f4"))),
    "f64": ("F64", floats((2, 3), "<f8").tobytes()),
    "i64": ("I64", ints((2, 3), "<i8").tobytes()),
    "i32": ("I32", ints((2, 3), "<i4").tobytes()),
    "u8": ("U8", ints((2, 3), "u1", unsigned=True).tobytes()),
}
header = {"__metadata__": {"format": "pt", "note": "fewshot fixture \u00e9"}}
data = b""
for name in sorted(tensors):
    dtype, raw = tensors[name]
    header[name] = {"dtype": dtype, "shape": [2, 3], "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header).encode("utf-8")
h += b" " * (-len(h) % 8)
with open(os.path.join(OUT, "dtypes.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
print("wrote", sorted(os.listdir(OUT)))
