#!/usr/bin/python3
"""phantom_to_dicom.py - writes phantom volumes (.npy, (z, y, x) counts) as DICOM NM files with
pydicom, the way a SPECT workstation exports a reconstruction.

    /usr/bin/python3 tools/phantom_to_dicom.py VOLUME.npy OUT.dcm [--spacing Z Y X] [--series-folder]
    /usr/bin/python3 tools/phantom_to_dicom.py --mps ROOT

One volume: a multi-frame NM Image (RECON TOMO), 16-bit signed stored values with Rescale
Slope = max / 32000 (so counts keep 5 digits), Pixel Spacing = (Y, X), Slice Thickness = Z,
the Detector Information Sequence holding Image Position/Orientation (axial, LPS), an energy
window 126.45-154.55 keV (99mTc) and "Tc99m sestamibi". --series-folder: OUT is a folder and
each slice is its own single-frame NM file (names in reverse slice order, so a reader must
sort by position).

--mps ROOT: every ROOT/<id>/volume.npy written by tools/export_phantom_volumes.lua becomes
ROOT/<id>/<id>_NM.dcm in the form PhysioNet's myocardial perfusion database describes (NM,
Discovery NM 530c, pinhole collimator MPH_27_45, Slice Thickness without Spacing Between
Slices, Pixel Representation signed), spacing from volume.json; the .npy and .json are removed.
"""
import json
import os
import sys

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"


def nm_dataset(path, patient_id, series_key, rows, cols, frames, spacing, slope, pinhole):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = NM_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["sop", path])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID = NM_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "NM"
    ds.Manufacturer = "GE MEDICAL SYSTEMS" if pinhole else "fewshot phantom"
    ds.ManufacturerModelName = "Discovery NM 530c" if pinhole else "fs.spect.simulate"
    ds.PatientID = patient_id
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", patient_id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", series_key])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["for", patient_id])
    ds.SeriesNumber = 1
    ds.SeriesDescription = "REST SA" if pinhole else "phantom recon"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.Units = "CNTS"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = (0x0054, 0x0080)
        ds.SliceVector = list(range(1, frames + 1))
    ds.NumberOfSlices = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
    ds.SliceThickness = float(spacing[0])
    if not pinhole:
        ds.SpacingBetweenSlices = float(spacing[0])
    ds.RescaleSlope = "%.6g" % slope
    ds.RescaleIntercept = 0
    rng = Dataset()
    rng.EnergyWindowLowerLimit, rng.EnergyWindowUpperLimit = 126.45, 154.55
    win = Dataset()
    win.EnergyWindowRangeSequence = [rng]
    win.EnergyWindowName = "Tc99m"
    ds.EnergyWindowInformationSequence = [win]
    ds.NumberOfEnergyWindows = 1
    rp = Dataset()
    rp.Radiopharmaceutical = "Tc99m sestamibi"
    ds.RadiopharmaceuticalInformationSequence = [rp]
    ds.NumberOfDetectors = 1
    return ds


def detector(position, collimator, ctype):
    det = Dataset()
    det.CollimatorGridName = collimator
    det.CollimatorType = ctype
    det.ImagePositionPatient = [float(v) for v in position]
    det.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    return det


def stored(vol):
    """int16 stored values and the slope that maps them back to counts."""
    top = float(vol.max()) if vol.size else 0.0
    slope = top / 32000.0 if top > 0 else 1.0
    slope = float("%.6g" % slope)
    return np.clip(np.round(vol / slope), -32768, 32767).astype("<i2"), slope


def write_volume(vol, out, spacing, patient_id="PHANTOM", pinhole=False, series_folder=False):
    nz, ny, nx = vol.shape
    q, slope = stored(vol)
    origin = (-(nx - 1) * spacing[2] / 2, -(ny - 1) * spacing[1] / 2, 0.0)
    coll = ("MPH_27_45", "PINH") if pinhole else ("LEHR", "PARA")
    if not series_folder:
        ds = nm_dataset(out, patient_id, out, ny, nx, nz, spacing, slope, pinhole)
        ds.DetectorInformationSequence = [detector(origin, *coll)]
        ds.PixelData = q.tobytes()
        ds.save_as(out, write_like_original=False)
        return [out]
    os.makedirs(out, exist_ok=True)
    paths = []
    for z in range(nz):
        p = os.path.join(out, "NM%04d.dcm" % (nz - z))
        ds = nm_dataset(p, patient_id, out, ny, nx, 1, spacing, slope, pinhole)
        pos = (origin[0], origin[1], origin[2] + z * spacing[0])
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = z + 1
        ds.DetectorInformationSequence = [detector(pos, *coll)]
        ds.PixelData = q[z].tobytes()
        ds.save_as(p, write_like_original=False)
        paths.append(p)
    return paths


def main(argv):
    if len(argv) >= 2 and argv[0] == "--mps":
        root = argv[1]
        n = 0
        for pid in sorted(os.listdir(root)):
            d = os.path.join(root, pid)
            npy = os.path.join(d, "volume.npy")
            if not os.path.isfile(npy):
                continue
            with open(os.path.join(d, "volume.json")) as f:
                spacing = json.load(f)["spacing_mm"]
            write_volume(np.load(npy).astype(np.float64), os.path.join(d, pid + "_NM.dcm"), spacing,
                         patient_id=pid, pinhole=True)
            os.remove(npy)
            os.remove(os.path.join(d, "volume.json"))
            n += 1
        print("wrote %d NM volumes under %s" % (n, root))
        return 0
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    spacing = [4.0, 4.0, 4.0]
    if "--spacing" in argv:
        i = argv.index("--spacing")
        spacing = [float(v) for v in argv[i + 1:i + 4]]
    vol = np.load(argv[0]).astype(np.float64)
    if vol.ndim == 2:
        vol = vol[None]
    paths = write_volume(vol, argv[1], spacing, series_folder="--series-folder" in argv)
    print("wrote %d file(s): %s" % (len(paths), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
