#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.sh) on a machine that receives a copy of this repository and
# reaches nothing else, such as a lent GPU machine whose own Python has JAX with CUDA and PyTorch:
#
#   bash benchmarks/device_check.sh pack           # here, beside the real data: writes .carry/ (about 50 MiB)
#   bash benchmarks/device_check.sh run [DIR] [gpu_check options, e.g. --only tests]   # there, with .carry/
#
# pack: FER2013's JPEG files as one file (benchmarks/device_data.py: the very bytes, 43 MiB) and KDEF and
# the Taiwanese set prepared as the protocol step prepares them (2.2 and 2.7 MiB). It reads the data from
# $EMOFX_DATA (default ../shared/data) and refuses to overwrite: remove .carry/ to pack again.
# run: unpacks FER2013 into a temporary folder, puts the prepared sets where gpu_check looks for them
# (gpu_check_out/data/), runs every step (further arguments go to gpu_check.sh), and copies the JSON
# summary and the steps' logs into DIR (default $OUT when set, else device_check_out), one log per step.
# Python: $PYTHON, else .venv/bin/python for pack and python3 for run.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY="${CARRY:-.carry}"  # the carried folder (another one for a test)
case "${1:-}" in
  pack)
    for file in fer2013.npz kdef.npz taiwanese.npz; do  # refused before anything is written
      [ ! -e "$CARRY/$file" ] || { echo "device_check: $CARRY/$file exists: remove $CARRY/ to pack again" \
        "(nothing was written)" >&2; exit 2; }
    done
    PYTHON="${PYTHON:-.venv/bin/python}"
    [ -x "$PYTHON" ] || command -v "$PYTHON" > /dev/null || {
      echo "device_check: no Python at $PYTHON: run 'make venv' first, or name one with PYTHON=" >&2; exit 2; }
    DATA="${EMOFX_DATA:-../shared/data}"
    [ -d "$DATA/fer2013" ] || { echo "device_check: $DATA/fer2013 is not a folder: set EMOFX_DATA to the folder" \
      "holding fer2013/, kdef/ and taiwanese/" >&2; exit 2; }
    mkdir -p "$CARRY"
    "$PYTHON" -m benchmarks.device_data pack "$DATA" fer2013 --out "$CARRY/fer2013.npz"
    "$PYTHON" -m emofx prepare "$DATA/kdef/frontal" --format kdef --landmarks none --no-progress \
      --out "$CARRY/kdef.npz"
    "$PYTHON" -m emofx prepare "$DATA/taiwanese" --format taiwanese --landmarks none --no-progress \
      --out "$CARRY/taiwanese.npz"
    du -sh "$CARRY"
    ;;
  run)
    PYTHON="${PYTHON:-python3}"
    shift
    RESULTS="${OUT:-device_check_out}"
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then RESULTS="$1"; shift; fi  # a folder, unless an option (--quick)
    for file in fer2013.npz kdef.npz taiwanese.npz; do
      [ -f "$CARRY/$file" ] || { echo "device_check: $CARRY/$file is missing: run 'bash $0 pack' where the data is" >&2; exit 2; }
    done
    DATA_DIR="$(mktemp -d)"
    trap 'rm -rf "$DATA_DIR"' EXIT  # the unpacked FER2013 (142 MiB) goes with the check
    "$PYTHON" -m benchmarks.device_data unpack "$CARRY/fer2013.npz" --out "$DATA_DIR"
    mkdir -p gpu_check_out/data
    cp "$CARRY/kdef.npz" "$CARRY/taiwanese.npz" gpu_check_out/data/  # the carried files are the ones to use
    rm -f gpu_check_out/gpu_check.json gpu_check_out/*.log  # an earlier check's, not copied back as this one's
    status=0
    EMOFX_DATA="$DATA_DIR" PYTHON="$PYTHON" bash benchmarks/gpu_check.sh --out gpu_check_out "$@" || status=$?
    mkdir -p -- "$RESULTS"
    shopt -s nullglob
    cp gpu_check_out/gpu_check.json gpu_check_out/*.log "$RESULTS"/  # the summary, and each step's log
    exit "$status"
    ;;
  *)
    sed -n '2,14p' "$0" | cut -c3-
    exit 2
    ;;
esac
