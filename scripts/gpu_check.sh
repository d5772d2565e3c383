#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, in one run of at most 8 minutes:
#
#   scripts/gpu_check.sh [NAME]
#
# writes perf/NAME.json (python -m bench perf: run-steps/s against the per-run oracle at K up to 128,
# the FLOP rate, every strategy's overhead, memory) and perf/NAME-full.json (python -m bench
# estimate: the full sweep's predicted training time). NAME defaults to the GPU's model (h200).
# DEVICE, OUT, PERF_FLAGS and FULL_CONFIG replace the device (cuda), the output folder (perf), the
# extra perf flags (none) and the config whose time is predicted (config/full.yaml); the tests run
# the script on a CPU with them.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda}
out=${OUT:-perf}
if [ "$device" = cuda ]; then
  python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: PyTorch sees no CUDA device')"
fi
name=${1:-$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower() if torch.cuda.is_available() else 'cpu')")}
mkdir -p "$out"
# shellcheck disable=SC2086  # PERF_FLAGS is a list of flags
timeout 240 python -m bench perf --config config/default.yaml --device "$device" ${PERF_FLAGS:-} --json "$out/$name.json"
timeout 240 python -m bench estimate --config "${FULL_CONFIG:-config/full.yaml}" --device "$device" --steps 10 \
  --sizes 32 128 --json "$out/$name-full.json"
