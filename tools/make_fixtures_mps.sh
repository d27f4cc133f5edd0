#!/bin/sh
# make_fixtures_mps.sh - spec/fixtures/mps/: a small synthetic copy of PhysioNet's myocardial
# perfusion scintigraphy database layout (3 patients, 4 short-axis slices of 32 x 32 at 6.4 mm,
# patient 3 without a mask) for spec/mps_spec.lua: phantom volumes exported by fewshot
# (tools/export_phantom_volumes.lua), written as NM DICOM by pydicom (tools/phantom_to_dicom.py).
set -e
cd "$(dirname "$0")/.."
out=spec/fixtures/mps
rm -rf "$out"
LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./?.so;;" OMP_NUM_THREADS=1 \
  lua5.4 tools/export_phantom_volumes.lua "$out" --patients 3 --slices 4 --matrix 32 --pixel-mm 6.4 --no-mask-for 3
/usr/bin/python3 tools/phantom_to_dicom.py --mps "$out"
