#!/usr/bin/env bash
# Stop the one-node SLURM cluster of scripts/slurm/start.sh: cancel its jobs, stop slurmd, slurmctld and
# (when start.sh started it) munged, and remove their state, logs and the generated slurm.conf.
# Idempotent: stopping a stopped cluster does nothing. Leaves the Debian packages installed.
#
#   BENCH_SLURM_KEEP_LOGS=DIR   copy the daemons' logs to DIR before removing them
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

if [ -n "${BENCH_SLURM_KEEP_LOGS:-}" ] && [ -d "$LOG_DIR" ]; then
  { mkdir -p "$BENCH_SLURM_KEEP_LOGS" && cp -r "$LOG_DIR"/. "$BENCH_SLURM_KEEP_LOGS"/; } || say "could not copy the logs"
fi

if conf_is_ours && live_pid "$RUN_DIR/slurmctld.pid" >/dev/null; then
  export SLURM_CONF=$CONF
  # Every job on this private cluster belongs to it: cancel them so no job step outlives the daemons.
  jobs=$(squeue -h -o %i 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    say "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 25); do [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

stopped=""
for daemon in slurmd slurmctld munged; do
  if live_pid "$RUN_DIR/$daemon.pid" >/dev/null; then stopped="$stopped $daemon"; fi
done
stop_pid_files "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid" "$RUN_DIR/munged.pid"
if [ -n "$stopped" ]; then say "stopped:$stopped"; else say "no daemon of this cluster was running"; fi

if conf_is_ours; then
  rm -f "$CONF"
fi
# Only what start.sh made, so a BENCH_SLURM_DIR pointing at a busy folder loses nothing else.
rm -rf "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
rmdir "$CLUSTER_DIR" 2>/dev/null || true
