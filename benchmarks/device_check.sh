#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.sh) on a machine that receives a copy of this repository and
# reaches nothing else, such as a lent GPU machine whose own Python has JAX with CUDA and PyTorch:
#
#   bash benchmarks/device_check.sh pack           # here, beside the real data: writes .carry/ (about 50 MiB)
#   bash benchmarks/device_check.sh run [DIR]      # there, with .carry/ travelling along (git ignores it)
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
    PYTHON="${PYTHON:-.venv/bin/python}"
    DATA="${EMOFX_DATA:-../shared/data}"
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
    RESULTS="${2:-${OUT:-device_check_out}}"
    for file in fer2013.npz kdef.npz taiwanese.npz; do
      [ -f "$CARRY/$file" ] || { echo "device_check: $CARRY/$file is missing: run 'bash $0 pack' where the data is" >&2; exit 2; }
    done
    DATA_DIR="$(mktemp -d)"
    "$PYTHON" -m benchmarks.device_data unpack "$CARRY/fer2013.npz" --out "$DATA_DIR"
    mkdir -p gpu_check_out/data
    cp -n "$CARRY/kdef.npz" "$CARRY/taiwanese.npz" gpu_check_out/data/
    status=0
    EMOFX_DATA="$DATA_DIR" PYTHON="$PYTHON" bash benchmarks/gpu_check.sh --out gpu_check_out "${@:3}" || status=$?
    mkdir -p "$RESULTS"
    shopt -s nullglob
    cp gpu_check_out/gpu_check.json gpu_check_out/*.log "$RESULTS"/  # the summary, and each step's log
    exit "$status"
    ;;
  *)
    sed -n '2,14p' "$0" | cut -c3-
    exit 2
    ;;
esac
