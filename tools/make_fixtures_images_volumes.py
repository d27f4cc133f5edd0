#!/usr/bin/python3
"""Writes the small image/volume fixtures under spec/fixtures/io/ with outside tools
(Pillow for PNG, nibabel for NIfTI, numpy for Interfile raw data), so the specs check that
fewshot reads files it did not write itself.

Run with Debian's python (it has numpy, nibabel, PIL):
    /usr/bin/python3 tools/make_fixtures_images_volumes.py

Every volume holds v[z][y][x] = x + 10*y + 100*z (x fastest in the file), and PNGs use the
formulas below, so the specs recompute the expected values instead of storing them.
  gray8.png        5 x 7, v = (37*r + 11*c) % 256            (r, c 0-based row/column)
  gray16.png       5 x 7, v = (7919*r + 1237*c) % 65536
  gray8_adam7.png  9 x 11 interlaced (Adam7), v = (29*r + 13*c) % 256  (own writer below)
  rgb.png          4 x 6, (R, G, B) = (10*r, 20*c, 5);  rgba.png the same with alpha 200;
  palette.png      the RGB image as an 8-bit palette image
"""
import gzip
import os
import struct
import zlib

import nibabel as nib
import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "spec", "fixtures", "io")
os.makedirs(OUT, exist_ok=True)


def p(name):
    return os.path.join(OUT, name)


def vol(nx, ny, nz):
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return (x + 10 * y + 100 * z)  # (z, y, x)


# ---- PNG ----
r, c = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
Image.fromarray(((37 * r + 11 * c) % 256).astype(np.uint8), mode="L").save(p("gray8.png"))
g16 = ((7919 * r + 1237 * c) % 65536).astype(np.uint16)
Image.fromarray(g16).save(p("gray16.png"))  # mode I;16 -> 16-bit grayscale PNG
check = np.array(Image.open(p("gray16.png")))
assert (check == g16).all() and Image.open(p("gray16.png")).mode.startswith("I")

r, c = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
rgb = np.stack([10 * r, 20 * c, np.full_like(r, 5)], axis=-1).astype(np.uint8)
Image.fromarray(rgb, mode="RGB").save(p("rgb.png"))
rgba = np.concatenate([rgb, np.full((4, 6, 1), 200, np.uint8)], axis=-1)
Image.fromarray(rgba, mode="RGBA").save(p("rgba.png"))
colors, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
pim = Image.fromarray(index.reshape(4, 6).astype(np.uint8), mode="P")
pim.putpalette(colors.astype(np.uint8).flatten().tolist())
pim.save(p("palette.png"))
pal = np.array(Image.open(p("palette.png")).convert("RGB"))
assert (pal == rgb).all(), "palette image must be lossless for the spec"


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)


def write_adam7_gray8(path, img):
    h, w = img.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = img[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.astype(np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


r, c = np.meshgrid(np.arange(9), np.arange(11), indexing="ij")
ad = ((29 * r + 13 * c) % 256).astype(np.uint8)
write_adam7_gray8(p("gray8_adam7.png"), ad)
im = Image.open(p("gray8_adam7.png"))
assert im.info.get("interlace") == 1 and (np.array(im) == ad).all()

# ---- NIfTI (nibabel) ----
v = vol(4, 3, 2)                       # (z, y, x)
xyz = np.transpose(v, (2, 1, 0))      # nibabel wants (x, y, z)
aff = np.diag([1.5, 2.0, 3.5, 1.0])
aff[:3, 3] = [-10.0, 20.0, 5.0]
# int16 stored = v, scaled values = slope * v + inter = 2 v - 6. nibabel rewrites
# scl_slope/scl_inter on save, so the two floats are patched into its file afterwards.
slope, inter = 2.0, -6.0
img = nib.Nifti1Image(xyz.astype(np.int16), aff)
img.header.set_data_dtype(np.int16)
img.header.set_qform(aff, code=1)
img.header.set_sform(aff, code=2)
img.header.set_xyzt_units("mm", "sec")
nib.save(img, p("int16_scaled.nii"))
with open(p("int16_scaled.nii"), "r+b") as f:
    f.seek(112)
    f.write(struct.pack("<ff", slope, inter))
with open(p("int16_scaled.nii"), "rb") as f, gzip.GzipFile(p("int16_scaled.nii.gz"), "wb", mtime=0) as g:
    g.write(f.read())
back = nib.load(p("int16_scaled.nii")).get_fdata()
assert np.allclose(back, 2 * xyz - 6) and np.allclose(nib.load(p("int16_scaled.nii.gz")).get_fdata(), 2 * xyz - 6)

hdr = nib.Nifti1Header(endianness=">")
img = nib.Nifti1Image(xyz.astype(">f4"), aff, header=hdr)
img.header.set_data_dtype(">f4")
img.header.set_xyzt_units("mm", "sec")
nib.save(img, p("float32_bigendian.nii"))
with open(p("float32_bigendian.nii"), "rb") as f:
    assert struct.unpack(">i", f.read(4))[0] == 348, "big-endian header expected"

two_d = (np.arange(6)[:, None] + 10 * np.arange(5)[None, :]).astype(np.uint8)  # (x, y)
img = nib.Nifti1Image(two_d, np.diag([0.8, 0.8, 1.0, 1.0]))
img.header.set_xyzt_units("mm")
nib.save(img, p("uint8_2d.nii"))

# ---- Interfile (headers as SIMIND / STIR write them; raw data by numpy) ----
v = vol(4, 3, 2)
junk = b"HEADERJUNK123456"  # 16 bytes before the data
with open(p("simind.a00"), "wb") as f:
    f.write(junk + v.astype(">i2").tobytes())
with open(p("simind.h00"), "w") as f:
    f.write("""!INTERFILE :=
!imaging modality := nucmed
!version of keys := 3.3
;SIMIND style: big endian short integers after a 16-byte offset
!GENERAL DATA :=
!data offset in bytes := 16
!name of data file := simind.a00
!GENERAL IMAGE DATA :=
!type of data := Tomographic
!imagedata byte order := BIGENDIAN
!number format := signed integer
!number of bytes per pixel := 2
!matrix size [1] := 4
!matrix size [2] := 3
!total number of images := 2
scaling factor (mm/pixel) [1] := 4.42
scaling factor (mm/pixel) [2] := 4.42
slice thickness (pixels) := 2
!END OF INTERFILE :=
""")
with open(p("stir.v"), "wb") as f:
    f.write(v.astype("<f4").tobytes())
with open(p("stir.hv"), "w", newline="\r\n") as f:
    f.write("""!INTERFILE  :=
name of data file := stir.v
!GENERAL DATA :=
!GENERAL IMAGE DATA :=
!type of data := PET
imagedata byte order := LITTLEENDIAN
!PET STUDY (General) :=
!PET data type := Image
process status := Reconstructed
!number format := float
!number of bytes per pixel := 4
number of dimensions := 3
Matrix Axis Label [1] := x
!Matrix Size [1] := 4
Scaling Factor (mm/pixel) [1] := 2.5
matrix axis label [2] := y
!matrix size [2] := 3
scaling factor (mm/pixel) [2] := 2.5
matrix axis label [3] := z
!matrix size [3] := 2
scaling factor (mm/pixel) [3] := 3.27
number of time frames := 1
image scaling factor[1] := 1
data offset in bytes[1] := 0
quantification units := 1
!END OF INTERFILE :=
""")
with open(p("gate_u8.img"), "wb") as f:
    f.write(b"\0" * 2048 + v[0].astype(np.uint8).tobytes())
with open(p("gate_u8.h33"), "w") as f:
    f.write("""!interfile :=
!name of data file := gate_u8.img
!number format := unsigned integer
!number of bytes per pixel := 1
!matrix size [1] := 4
!matrix size [2] := 3
!number of images/energy window := 1
data starting block := 1
scaling factor (mm/pixel) [1] := 3.0
scaling factor (mm/pixel) [2] := 3.0
!end of interfile :=
""")
print("wrote", sorted(os.listdir(OUT)))
