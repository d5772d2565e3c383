#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, in one run of at most 10 minutes:
#
#   scripts/gpu_check.sh [NAME]
#
# 1. the transformer cells of the full sweep: perf/NAME-full-transformer.json predicts each of them
#    (python -m bench estimate --cells), then the cells matching TRAIN_CELLS are trained whole, one after
#    the other for at most TRAIN_BUDGET seconds in all, and perf/NAME-full-trained.tsv records each
#    one's wall time (the job's, as a workflow runs it: a fresh `python -m bench train`);
# 2. perf/NAME.json (python -m bench perf: run-steps/s against the per-run oracle at K up to 128, the
#    FLOP rate, every strategy's overhead, memory);
# 3. perf/NAME-full.json (python -m bench estimate: the whole full sweep's predicted training time).
#
# Each stage has its own time limit and a failed stage does not stop the next (the exit status is
# then 1). NAME defaults to the GPU's model (h200). DEVICE, OUT, PERF_FLAGS, FULL_CONFIG, FULL_CELLS,
# TRAIN_CELLS and TRAIN_BUDGET replace the device (cuda), the output folder (perf), the extra perf
# flags (none), the config of the full sweep (config/full.yaml), the cells of stage 1
# (*-transformer-*), those trained whole (*-transformer-adam-none) and their time (120 s); the tests
# run the script on a CPU with them.
set -uo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda}
out=${OUT:-perf}
full=${FULL_CONFIG:-config/full.yaml}
if [ "$device" = cuda ]; then
  python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'error: PyTorch sees no CUDA device')" ||
    exit 1
fi
name=${1:-$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower() if torch.cuda.is_available() else 'cpu')")}
mkdir -p "$out"
failed=0

# 1. the full sweep's transformer cells: predicted, then some trained whole
timeout 100 python -m bench estimate --config "$full" --cells "${FULL_CELLS:-*-transformer-*}" --device "$device" \
  --steps 10 --sizes 32 128 --json "$out/$name-full-transformer.json" || failed=1
trained="$out/$name-full-trained.tsv"
printf 'cell\tseconds\tstatus\n' > "$trained"
budget=${TRAIN_BUDGET:-120}
work=$(mktemp -d)
for cell in $(python -m bench cells --config "$full"); do
  # shellcheck disable=SC2053  # TRAIN_CELLS is a glob pattern
  [[ $cell == ${TRAIN_CELLS:-*-transformer-adam-none} ]] || continue
  if [ "$budget" -le 0 ]; then
    printf '%s\t\tnot started (TRAIN_BUDGET spent)\n' "$cell" >> "$trained"
    continue
  fi
  started=$(date +%s.%N)
  timeout "$budget" python -m bench train --config "$full" --cell "$cell" --out "$work/$cell" --quiet \
    --data-cache "$work/cache"
  code=$?
  seconds=$(python -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$started")
  case $code in
    0) status=trained ;;
    124) status="stopped at TRAIN_BUDGET"; failed=1 ;;
    *) status="failed (exit $code)"; failed=1 ;;
  esac
  printf '%s\t%s\t%s\n' "$cell" "$seconds" "$status" >> "$trained"
  budget=$((budget - ${seconds%.*} - 1))
done
rm -rf "$work"

# 2. the engine against its peers
# shellcheck disable=SC2086  # PERF_FLAGS is a list of flags
timeout 200 python -m bench perf --config config/default.yaml --device "$device" ${PERF_FLAGS:-} \
  --json "$out/$name.json" || failed=1

# 3. the whole full sweep's predicted time
timeout 150 python -m bench estimate --config "$full" --device "$device" --steps 10 --sizes 32 128 \
  --json "$out/$name-full.json" || failed=1
exit $failed
