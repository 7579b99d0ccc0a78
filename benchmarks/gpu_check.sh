#!/usr/bin/env bash
# One check of a GPU machine in under 5 minutes: environment, the device-dependent tests, the
# benchmark (batch 64 and 512, PyTorch eager and torch.compile), the culture protocol and FER2013
# for a few epochs; one JSON summary in gpu_check_out/gpu_check.json (printed last).
#   bash benchmarks/gpu_check.sh [--quick] [--out DIR] [--only STEP,...]    (--help for more)
# Uses .venv/bin/python when present (make venv; pip install -e ".[bench]" for the PyTorch parts).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
exec "$PYTHON" -m benchmarks.gpu_check "$@"
