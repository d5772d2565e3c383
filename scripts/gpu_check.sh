#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, in one run of at most 10 minutes:
#
#   scripts/gpu_check.sh [NAME]
#
# 1. predict: the transformer cells of the full sweep, each one's predicted time
#    (python -m bench estimate --cells) in perf/NAME-full-transformer.json;
# 2. train: cells matching TRAIN_CELLS trained whole, each a fresh `python -m bench train` as a workflow
#    runs it, cheapest predicted first, those already recorded as trained skipped, none started whose
#    prediction exceeds what is left of TRAIN_BUDGET seconds; each one's wall time is appended, dated,
#    to perf/NAME-full-trained.tsv, so that runs on later days measure further cells;
# 3. perf: perf/NAME.json (python -m bench perf: run-steps/s against the per-run oracle and the vmap
#    ensemble at K up to 128, the FLOP rate, every strategy's overhead, memory);
# 4. full: perf/NAME-full.json (python -m bench estimate: the whole full sweep's predicted training time).
#
# Each stage has its own time limit and a failed stage does not stop the next (the exit status is
# then 1). NAME defaults to the GPU's model (h200). STAGES (default "predict train perf full") picks
# stages; DEVICE, OUT, PERF_FLAGS, FULL_CONFIG, FULL_CELLS, TRAIN_CELLS and TRAIN_BUDGET replace the
# device (cuda), the output folder (perf), the extra perf flags (none), the config of the full sweep
# (config/full.yaml), the cells of stage 1 (*-transformer-*), those trained whole
# (*-transformer-*) and their time (120 s); PREDICT_TIMEOUT, PERF_TIMEOUT and FULL_TIMEOUT the time limits of
# stages 1, 3 and 4 (100, 200 and 150 s). The tests run the script on a CPU with them.
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

stages=" ${STAGES:-predict train perf full} "
predicted="$out/$name-full-transformer.json"

# 1. the full sweep's transformer cells, predicted
if [[ $stages == *" predict "* ]]; then
  timeout "${PREDICT_TIMEOUT:-100}" python -m bench estimate --config "$full" --cells "${FULL_CELLS:-*-transformer-*}" --device "$device" \
    --steps 10 --sizes 32 128 --json "$predicted" || failed=1
fi

# 2. some of them trained whole: cheapest predicted first, each recorded (dated) once trained
if [[ $stages == *" train "* ]]; then
  trained="$out/$name-full-trained.tsv"
  [ -s "$trained" ] || printf 'date\tcell\tseconds\tpredicted_s\tstatus\n' > "$trained"
  budget=${TRAIN_BUDGET:-120}
  work=$(mktemp -d)
  # one line per cell to train: its id and its prediction (empty where none is recorded)
  plan=$(python - "$full" "$predicted" "$trained" "${TRAIN_CELLS:-*-transformer-*}" <<'PY'
import csv, fnmatch, json, pathlib, sys
from bench import sweep
config, predicted, trained, pattern = sys.argv[1:]
record = pathlib.Path(predicted)
seconds = {cell: s for stratum in json.loads(record.read_text())["strata"]
           for cell, s in stratum["predicted_cells_s"].items()} if record.exists() else {}
with open(trained) as rows:
    done = {row["cell"] for row in csv.DictReader(rows, delimiter="\t") if row["status"] == "trained"}
cells = [cell.id for cell in sweep.cells(sweep.load(config))
         if fnmatch.fnmatchcase(cell.id, pattern) and cell.id not in done]
for cell in sorted(cells, key=lambda cell: seconds.get(cell, float("inf"))):
    print(cell, f"{seconds[cell]:.1f}" if cell in seconds else "")
PY
  ) || failed=1
  while read -r cell prediction; do
    [ -n "$cell" ] || continue
    if [ -n "$prediction" ] && [ "${prediction%.*}" -ge "$budget" ]; then
      continue  # predicted not to fit in what is left
    fi
    if [ "$budget" -le 0 ]; then
      break
    fi
    started=$(date +%s.%N)
    timeout "$budget" python -m bench train --config "$full" --cell "$cell" --out "$work/$cell" --quiet \
      --data-cache "$work/cache" < /dev/null
    code=$?
    seconds=$(python -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$started")
    case $code in
      0) status=trained ;;
      124) status="stopped at TRAIN_BUDGET"; failed=1 ;;
      *) status="failed (exit $code)"; failed=1 ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%F)" "$cell" "$seconds" "$prediction" "$status" >> "$trained"
    budget=$((budget - ${seconds%.*} - 1))
  done <<< "$plan"
  rm -rf "$work"
fi

# 3. the engine against its peers
if [[ $stages == *" perf "* ]]; then
  # shellcheck disable=SC2086  # PERF_FLAGS is a list of flags
  timeout "${PERF_TIMEOUT:-200}" python -m bench perf --config config/default.yaml --device "$device" ${PERF_FLAGS:-} \
    --json "$out/$name.json" || failed=1
fi

# 4. the whole full sweep's predicted time
if [[ $stages == *" full "* ]]; then
  timeout "${FULL_TIMEOUT:-150}" python -m bench estimate --config "$full" --device "$device" --steps 10 --sizes 32 128 \
    --json "$out/$name-full.json" || failed=1
fi
exit $failed
