#!/usr/bin/python3
"""make_fixtures_dicom.py - the DICOM fixtures of spec/dicom_spec.lua and their expected values,
computed by pydicom (never by fewshot).

    /usr/bin/python3 tools/make_fixtures_dicom.py      (Debian's python3-pydicom + python3-numpy)

Writes into spec/fixtures/dicom/:
  * copies of a few small files of pydicom's test set (MIT licence, see ORIGIN.md), chosen to
    cover the transfer syntaxes: explicit/implicit VR little endian, explicit big endian,
    deflate, RLE, JPEG 2000, JPEG-LS, plus a truncated file and an object without pixel data;
  * files written here with pydicom: nm_tomo.dcm (a multi-frame NM RECON TOMO volume of a
    smooth phantom, 8 x 12 x 10, 4.2 mm pixels, 3.5 mm slices, energy windows and a detector),
    nm_tomo.npy (its volume, float32, for the spec to compare every voxel),
    mpeg2.dcm (a transfer syntax fewshot refuses), no_pixels.dcm (an MR header without
    (7FE0,0010)), badlen.dcm (a Pixel Data length that runs past the end of the file);
  * expected.lua: for each file (the committed ones and a larger set read from pydicom's own
    folder, when installed) what pydicom reads: shape, sum, min, max, values at a few indices,
    pixel spacing, slice spacing, image position/orientation, modality, transfer syntax UID,
    rescale; or, for a file fewshot must refuse, the words its error must contain.
Pixel values come from ds.pixel_array with the modality LUT (rescale slope/intercept) applied,
as float64. Files whose pixel data pydicom cannot decode here (JPEG-LS, 12-bit JPEG: no handler
in Debian's pydicom) are compared with the uncompressed file they were made from
(same_as = that file), since they are lossless copies of it.
"""
import os
import shutil
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers.util import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "spec", "fixtures", "dicom")
PYDICOM_DIR = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")

# committed copies (< 60 KB together)
COMMITTED = [
    "MR_small.dcm",              # explicit VR little endian, 64 x 64 int16
    "MR_small_bigendian.dcm",    # explicit VR big endian
    "MR_small_RLE.dcm",          # RLE lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless (compared with MR_small)
    "MR_small_jp2klossless.dcm", # JPEG 2000 lossless
    "rtdose_1frame.dcm",         # RT dose, 32-bit, Grid Frame Offset Vector, no Number of Frames
    "image_dfl.dcm",             # deflated explicit VR little endian
    "SC_rgb_small_odd.dcm",      # RGB 3 x 3
    "MR_truncated.dcm",          # pixel data cut short
    "rtplan.dcm",                # no pixel data (an RT plan)
]
# read from pydicom's folder when the package is installed (not committed)
LARGER = [
    "CT_small.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm", "MR_small_padded.dcm", "JPEG2000.dcm",
    "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm", "rtdose.dcm", "rtdose_expb.dcm",
    "rtdose_rle.dcm", "rtdose_rle_1frame.dcm", "rtdose_expb_1frame.dcm", "ExplVR_BigEnd.dcm",
    "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm",
    "SC_rgb_jpeg_dcmd.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_gdcm_KY.dcm", "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_small_odd_jpeg.dcm",
    "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm",
]
# decoded by fewshot but not by Debian's pydicom: lossless copies of another file
SAME_AS = {"MR_small_jpeg_ls_lossless.dcm": "MR_small.dcm"}
# the same, in pydicom's folder (JPEG lossless process 14: no decoder in Debian's pydicom)
SAME_AS_LARGER = {"SC_rgb_jpeg_gdcm.dcm": "SC_rgb_rle.dcm"}
# lossy JPEG: decoders differ by a few grey levels (libjpeg versions, upsampling)
LOSSY_TOL = {"SC_rgb_jpeg_dcmtk.dcm": 8, "SC_rgb_dcmtk_+eb+cy+np.dcm": 8,
             "SC_rgb_dcmtk_+eb+cr.dcm": 8, "SC_rgb_small_odd_jpeg.dcm": 8,
             "JPGExtended.dcm": 2}
# what fewshot must refuse, and words of its message
REFUSED = {
    "MR_truncated.dcm": "truncated",
    "rtplan.dcm": "no pixel data",
    "mpeg2.dcm": "unsupported transfer syntax 1.2.840.10008.1.2.4.100",
    "no_pixels.dcm": "no pixel data",
    "badlen.dcm": "truncated",
    "liver_1frame.dcm": "bits allocated 1",
    "SC_ybr_full_422_uncompressed.dcm": "YBR_FULL_422",
    "reportsi.dcm": "no pixel data",
    "rtplan_truncated.dcm": "truncated or malformed",
    "no_meta.dcm": "not a DICOM file",
    "SC_rgb_rle_16bit.dcm": "RLE with 3 samples of 16 bits",
    "SC_rgb_rle_32bit_2frame.dcm": "RLE with 3 samples of 32 bits",
}
LARGER_REFUSED = ["liver_1frame.dcm", "SC_ybr_full_422_uncompressed.dcm", "reportsi.dcm",
                  "rtplan_truncated.dcm", "no_meta.dcm", "SC_rgb_rle_16bit.dcm",
                  "SC_rgb_rle_32bit_2frame.dcm"]


def nm_phantom(nz=8, ny=12, nx=10):
    """A smooth count volume: a warm ellipsoid with a hot off-centre blob."""
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    r2 = ((z - 3.5) / 3.0) ** 2 + ((y - 5.5) / 4.5) ** 2 + ((x - 4.5) / 3.8) ** 2
    hot = np.exp(-(((z - 2) ** 2 + (y - 4) ** 2 + (x - 6) ** 2) / 3.0))
    return np.round(200 * (r2 < 1) + 700 * hot + 3 * z + y).astype(np.uint16)


def base_dataset(path, sop_class, modality, ts=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[path])
    meta.TransferSyntaxUID = ts
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "PHANTOM01"
    ds.PatientName = "Phantom^Synthetic"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", path])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", path])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["for", path])
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    return ds


def write_nm(path, vol, spacing=(3.5, 4.2, 4.2), position=(-21.0, -25.2, 30.0),
             orientation=(1, 0, 0, 0, 1, 0), slope=None):
    """A multi-frame NM Image (RECON TOMO): frames are slices along the normal."""
    ds = base_dataset(path, "1.2.840.10008.5.1.4.1.1.20", "NM")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.SeriesDescription = "SPECT phantom recon"
    ds.Units = "CNTS"
    nz, ny, nx = vol.shape
    ds.NumberOfFrames = nz
    ds.NumberOfSlices = nz
    ds.FrameIncrementPointer = (0x0054, 0x0080)
    ds.SliceVector = list(range(1, nz + 1))
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [spacing[1], spacing[2]]
    ds.SpacingBetweenSlices = spacing[0]
    ds.SliceThickness = spacing[0]
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = 0
    win = Dataset()
    rng = Dataset()
    rng.EnergyWindowLowerLimit = 126.45
    rng.EnergyWindowUpperLimit = 154.55
    win.EnergyWindowRangeSequence = [rng]
    win.EnergyWindowName = "Tc99m"
    ds.EnergyWindowInformationSequence = [win]
    ds.NumberOfEnergyWindows = 1
    det = Dataset()
    det.CollimatorGridName = "LEHR"
    det.CollimatorType = "PARA"
    det.RadialPosition = 250.0
    det.ImagePositionPatient = list(position)
    det.ImageOrientationPatient = list(orientation)
    ds.DetectorInformationSequence = [det]
    ds.NumberOfDetectors = 1
    rp = Dataset()
    rp.Radiopharmaceutical = "Tc99m sestamibi"
    ds.RadiopharmaceuticalInformationSequence = [rp]
    ds.PixelData = vol.astype("<u2").tobytes()
    ds.save_as(path, write_like_original=False)


def write_ct_slice(path, img, z, series, description, instance, position_z=None,
                   orientation=(1, 0, 0, 0, 1, 0)):
    """One CT slice of a series: int16 stored, rescale -1024 (HU)."""
    ds = base_dataset(path, "1.2.840.10008.5.1.4.1.1.2", "CT")
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", series])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", "series-fixtures"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["for", "series-fixtures"])
    ds.SeriesDescription = description
    ds.SeriesNumber = 7 if series == "ct" else 8
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.8, 0.7]
    ds.SliceThickness = 2.5
    ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = [-2.8, -3.2, 2.5 * z if position_z is None else position_z]
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.PixelData = img.astype("<u2").tobytes()
    ds.save_as(path, write_like_original=False)


def ct_slice(z):
    y, x = np.mgrid[0:6, 0:5]
    return (1000 + 100 * z + 10 * y + x).astype(np.uint16)


def write_series(out):
    """series/: 4 CT slices whose file names run against their positions and whose Instance
    Numbers are scrambled; mixed/: those plus 2 files of another series; gap/: slice 3 left out;
    tilted/: 3 slices on an oblique plane (normal not along z)."""
    for sub in ("series", "mixed", "gap", "tilted"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    instance = [3, 1, 4, 2]
    for z in range(4):
        name = "IM%04d" % (9 - z)  # no extension: found by the DICM preamble
        write_ct_slice(os.path.join(out, "series", name), ct_slice(z), z, "ct", "CT 2.5 mm", instance[z])
        write_ct_slice(os.path.join(out, "mixed", name), ct_slice(z), z, "ct", "CT 2.5 mm", instance[z])
        if z != 2:
            write_ct_slice(os.path.join(out, "gap", name + ".dcm"), ct_slice(z), z, "ct", "CT 2.5 mm", instance[z])
    for z in range(2):
        write_ct_slice(os.path.join(out, "mixed", "other%d.dcm" % z), ct_slice(z), z, "scout", "scout", z + 1)
    c, s_ = np.cos(0.3), np.sin(0.3)
    ori = (1, 0, 0, 0, c, s_)  # normal = (0, -sin, cos)
    for z in range(3):
        # positions along the normal 0, 3, 6 mm, written with a shuffled order of names
        p = [0.0, 3.0 * -s_ * z, 3.0 * c * z]
        ds_path = os.path.join(out, "tilted", "s%d.dcm" % ((z * 2) % 3))
        write_ct_slice(ds_path, ct_slice(z), z, "ct", "tilted", z + 1, orientation=ori)
        d = pydicom.dcmread(ds_path)
        d.ImagePositionPatient = p
        d.save_as(ds_path, write_like_original=False)


def write_special(out):
    src = pydicom.dcmread(os.path.join(PYDICOM_DIR, "MR_small.dcm"))
    # MPEG2: a syntax GDCM names but fewshot refuses
    ds = base_dataset(os.path.join(out, "mpeg2.dcm"), src.SOPClassUID, "MR",
                      ts="1.2.840.10008.1.2.4.100")
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(os.path.join(out, "mpeg2.dcm"), write_like_original=False)
    # an image header without pixel data
    ds = base_dataset(os.path.join(out, "no_pixels.dcm"), src.SOPClassUID, "MR")
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.save_as(os.path.join(out, "no_pixels.dcm"), write_like_original=False)
    # a Pixel Data whose declared length runs past the end of the file: the 8 x 8 uint16
    # image written whole, then its last 40 bytes cut
    p = os.path.join(out, "badlen.dcm")
    ds = base_dataset(p, src.SOPClassUID, "MR")
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(64, dtype="<u2").tobytes()
    ds.save_as(p, write_like_original=False)
    with open(p, "rb") as f:
        b = f.read()
    with open(p, "wb") as f:
        f.write(b[:-40])


def lua_num(v):
    v = float(v)
    if v == int(v) and abs(v) < 2 ** 53:
        return "%d" % int(v)
    return repr(v)


def lua_list(vs):
    return "{" + ", ".join(lua_num(v) for v in vs) + "}"


def expected_entry(path, name, committed):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    spp = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if spp == 1:
        arr = apply_modality_lut(arr, ds).astype(np.float64)
        arr = arr.reshape(frames, int(ds.Rows), int(ds.Columns))
    else:  # pydicom gives (frames, rows, cols, 3); fewshot (frames, 3, rows, cols)
        arr = arr.astype(np.float64).reshape(frames, int(ds.Rows), int(ds.Columns), 3)
        arr = arr.transpose(0, 3, 1, 2)
    flat = arr.reshape(-1)
    idx = sorted(set([0, flat.size // 3, flat.size // 2, (2 * flat.size) // 3, flat.size - 1]))
    e = ["  [%q] = {" % name if False else '  ["%s"] = {' % name]
    e.append("    committed = %s," % ("true" if committed else "false"))
    e.append("    shape = %s," % lua_list(arr.shape))
    e.append("    sum = %s, min = %s, max = %s," % (lua_num(flat.sum()), lua_num(flat.min()),
                                                  lua_num(flat.max())))
    e.append("    at = {%s}," % ", ".join("[%d] = %s" % (i + 1, lua_num(flat[i])) for i in idx))
    e.append('    modality = "%s",' % ds.get("Modality", ""))
    e.append('    transfer_syntax_uid = "%s",' % ds.file_meta.TransferSyntaxUID)
    if "PixelSpacing" in ds:
        e.append("    pixel_spacing_mm = %s," % lua_list(ds.PixelSpacing))
    if "SpacingBetweenSlices" in ds:
        e.append("    slice_spacing_mm = %s," % lua_num(ds.SpacingBetweenSlices))
    elif "GridFrameOffsetVector" in ds and len(ds.GridFrameOffsetVector) >= 2:
        g = ds.GridFrameOffsetVector
        e.append("    slice_spacing_mm = %s," % lua_num(abs(float(g[1]) - float(g[0]))))
    pos = ds.get("ImagePositionPatient")
    ori = ds.get("ImageOrientationPatient")
    if pos is None and "DetectorInformationSequence" in ds:
        pos = ds.DetectorInformationSequence[0].get("ImagePositionPatient")
        ori = ds.DetectorInformationSequence[0].get("ImageOrientationPatient")
    if pos is not None:
        e.append("    image_position = %s," % lua_list(pos))
    if ori is not None:
        e.append("    image_orientation = %s," % lua_list(ori))
    e.append("    rescale_slope = %s, rescale_intercept = %s," % (
        lua_num(ds.get("RescaleSlope", 1)), lua_num(ds.get("RescaleIntercept", 0))))
    if name in LOSSY_TOL:
        e.append("    tolerance = %s," % lua_num(LOSSY_TOL[name]))
    e.append("  },")
    return "\n".join(e)


def main():
    os.makedirs(OUT, exist_ok=True)
    for n in COMMITTED:
        shutil.copyfile(os.path.join(PYDICOM_DIR, n), os.path.join(OUT, n))
    write_nm(os.path.join(OUT, "nm_tomo.dcm"), nm_phantom())
    np.save(os.path.join(OUT, "nm_tomo.npy"), nm_phantom().astype(np.float32))
    write_special(OUT)
    write_series(OUT)
    lines = ["-- expected.lua - what pydicom %s reads from the DICOM fixtures (made by" % pydicom.__version__,
             "-- tools/make_fixtures_dicom.py; do not edit). committed = false: a file of pydicom's",
             "-- test folder, read from there when python3-pydicom is installed. Values: the modality",
             "-- LUT applied, C order of fewshot's tensor ((frames, rows, cols) or (frames, 3, rows, cols));",
             "-- at[i] is the value at 1-based flat index i.",
             "return {", "files = {"]
    for n in COMMITTED + ["nm_tomo.dcm"]:
        if n in REFUSED or n in SAME_AS:
            continue
        lines.append(expected_entry(os.path.join(OUT, n), n, True))
    for n in LARGER:
        if n in SAME_AS or n in SAME_AS_LARGER:
            continue
        try:
            lines.append(expected_entry(os.path.join(PYDICOM_DIR, n), n, False))
        except Exception as exc:  # no pydicom handler for it here: say so, do not guess
            print("skipped %s: pydicom cannot decode it here (%s)" % (n, exc), file=sys.stderr)
    lines.append("},")
    lines.append("same_as = {")
    for k, v in SAME_AS.items():
        lines.append('  ["%s"] = "%s",' % (k, v))
    lines.append("},")
    lines.append("same_as_larger = {")
    for k, v in SAME_AS_LARGER.items():
        lines.append('  ["%s"] = "%s",' % (k, v))
    lines.append("},")
    lines.append("refused = {")
    for k, v in REFUSED.items():
        committed = k not in LARGER_REFUSED
        lines.append('  ["%s"] = {committed = %s, says = "%s"},' % (k, "true" if committed else "false", v))
    lines.append("},")
    lines.append("}")
    with open(os.path.join(OUT, "expected.lua"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sizes = [os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs]
    print("wrote %s (%d files, %d bytes)" % (OUT, len(sizes), sum(sizes)))


if __name__ == "__main__":
    main()
