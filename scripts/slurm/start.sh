#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for tests and local trials of profiles/slurm.
#
#   sudo scripts/slurm/start.sh     # installs munge + slurm from Debian packages if missing, starts them
#   sinfo; srun hostname; sbatch --wrap 'echo hi'; squeue
#   sudo scripts/slurm/stop.sh      # stops the daemons, removes their state and the generated slurm.conf
#
# Debian/Ubuntu, as root. No init system is needed: munged, slurmctld and slurmd are started directly.
# Accounting is off (no slurmdbd): use `--slurm-status-command squeue --slurm-no-account` with Snakemake.
# Idempotent: when the cluster already runs with the same configuration it only checks it.
# Exit status: 0 up, 3 this machine cannot host it (not root, no apt-get, packages unavailable), 1 other failure.
# Settings (environment): see common.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

unsupported() { say "cannot start a cluster here: $*"; exit "$EXIT_UNSUPPORTED"; }
die() {
  say "error: $*"
  local log
  for log in "$LOG_DIR"/*.log; do
    [ -f "$log" ] && { say "--- tail of $log"; tail -n 20 "$log" >&2; }
  done
  exit 1
}

[ "$(uname -s)" = Linux ] || unsupported "not Linux"
[ "$(id -u)" -eq 0 ] || unsupported "must run as root (it installs Debian packages and starts munged, slurmctld, slurmd)"

# --- 1. Packages --------------------------------------------------------------------------------------
install_packages() {
  command -v apt-get >/dev/null || unsupported "SLURM is not installed and there is no apt-get to install it"
  say "installing munge slurmctld slurmd slurm-client (apt-get)"
  # Keep the packages' init scripts from starting anything: this script starts the daemons itself.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  local ok=1
  apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed; trying the package lists there are"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    munge slurmctld slurmd slurm-client >"${TMPDIR:-/tmp}/bench-slurm-apt.log" 2>&1 || ok=0
  [ "$own_policy" = 1 ] && rm -f "$policy"
  [ "$ok" = 1 ] || { tail -n 20 "${TMPDIR:-/tmp}/bench-slurm-apt.log" >&2
                     unsupported "apt-get install munge slurmctld slurmd slurm-client failed"; }
}
for tool in munged munge unmunge slurmctld slurmd sinfo sbatch srun squeue scontrol; do
  command -v "$tool" >/dev/null || { install_packages; break; }
done
for tool in munged munge unmunge slurmctld slurmd sinfo sbatch srun squeue scontrol; do
  command -v "$tool" >/dev/null || unsupported "$tool is still missing after installing the packages"
done

mkdir -p "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR" "$RUN_DIR"

# --- 2. Munge (authentication) ------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
  say "munged already runs"
else
  id munge >/dev/null 2>&1 || die "no user 'munge' (the munge package creates it)"
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge && chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
  for dir in /run/munge /var/lib/munge /var/log/munge; do
    mkdir -p "$dir" && chown munge:munge "$dir"
  done
  chmod 755 /run/munge
  say "starting munged"
  runuser -u munge -- munged --force </dev/null >>"$LOG_DIR/munged.out" 2>&1 || die "munged did not start"
  for _ in $(seq 50); do munge_ok && break; sleep 0.2; done
  munge_ok || die "munge does not answer (munge -n | unmunge)"
  # stop.sh stops munged only when this script started it.
  cp /run/munge/munged.pid "$RUN_DIR/munged.pid"
fi

# --- 3. slurm.conf ------------------------------------------------------------------------------------
NODE=$(hostname -s)
# The node as slurmd sees it: CPUs, sockets, cores, threads, RealMemory.
NODE_LINE=$(slurmd -C | head -n 1)
case "$NODE_LINE" in NodeName=*) ;; *) die "unexpected 'slurmd -C' output: $NODE_LINE" ;; esac
NODE_LINE="NodeName=$NODE NodeAddr=127.0.0.1 ${NODE_LINE#NodeName=* }"
if compgen -G "/usr/lib/*/slurm-wlm/select_cons_tres.so" >/dev/null \
   || compgen -G "/usr/lib*/slurm/select_cons_tres.so" >/dev/null; then
  SELECT=cons_tres
else
  SELECT=cons_res
fi

if [ -e "$CONF" ] && ! conf_is_ours; then
  unsupported "$CONF exists and was not written by this script (a SLURM installation of its own?); refusing to replace it"
fi
NEW_CONF=$(sed -e "s|@CLUSTER_NAME@|bench|" -e "s|@CONTROL_HOST@|$NODE|" -e "s|@NODE_LINE@|$NODE_LINE|" \
  -e "s|@SELECT@|$SELECT|" -e "s|@STATE_DIR@|$STATE_DIR|" -e "s|@LOG_DIR@|$LOG_DIR|" -e "s|@RUN_DIR@|$RUN_DIR|" \
  -e "s|@PARTITION@|$PARTITION|" "$HERE/slurm.conf.in")
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$NEW_CONF" ]; then
  :
else
  if live_pid "$RUN_DIR/slurmctld.pid" >/dev/null || live_pid "$RUN_DIR/slurmd.pid" >/dev/null; then
    say "the configuration changed: restarting slurmctld and slurmd"
    stop_pid_files "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid"
  fi
  mkdir -p "$(dirname "$CONF")"
  printf '%s\n' "$NEW_CONF" >"$CONF"
  say "wrote $CONF"
fi
export SLURM_CONF=$CONF

# --- 4. Daemons ---------------------------------------------------------------------------------------
if live_pid "$RUN_DIR/slurmctld.pid" >/dev/null; then
  say "slurmctld already runs"
else
  say "starting slurmctld"
  slurmctld -f "$CONF" </dev/null >>"$LOG_DIR/slurmctld.out" 2>&1 || die "slurmctld did not start"
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld does not answer (scontrol ping)"

if live_pid "$RUN_DIR/slurmd.pid" >/dev/null; then
  say "slurmd already runs"
else
  say "starting slurmd"
  slurmd -f "$CONF" </dev/null >>"$LOG_DIR/slurmd.out" 2>&1 || die "slurmd did not start"
fi

# --- 5. Wait for the node -----------------------------------------------------------------------------
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }
state=""
for i in $(seq 150); do
  state=$(node_state)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    down*|drain*|fail*)
      # Left over from an earlier run (or a slurmd restart): put it back into service.
      if [ $((i % 10)) = 1 ]; then scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true; fi ;;
  esac
  sleep 0.2
done
case "$state" in
  idle|mixed|allocated|completing) ;;
  *) die "node $NODE is not up (state: ${state:-unknown}; scontrol show node: $(scontrol show node "$NODE" 2>&1 | grep -o 'Reason=.*'))" ;;
esac
say "up: partition $PARTITION, node $NODE ($state), slurm.conf $CONF, logs $LOG_DIR"
sinfo
