"""The smoke tier on a real SLURM cluster: one node on this machine, driven through profiles/slurm.

scripts/slurm/start.sh installs (from Debian packages, when missing) and starts munged, slurmctld and
slurmd; the test then runs the smoke tier in a temporary copy of the repository twice, once with
``--profile profiles/slurm`` and once locally with ``--cores 2``, and checks that

- every non-local job went through ``sbatch``: the SLURM job ids Snakemake reports are the jobs
  slurmctld logged as submitted batch jobs, and all of them COMPLETED;
- the aggregated results/smoke/runs.parquet (and curves.parquet) equal the local run's, timing columns aside.

scripts/slurm/stop.sh stops the cluster afterwards (unless it was already running before the test).
The test skips, saying why, where no cluster can start (not root, no apt-get, packages unavailable).

By default only the first problem of the smoke tier goes through SLURM (two train jobs and the
aggregate job): every SLURM job pays for two Snakemake start-ups, and all six cells take over three
minutes on two cores. BENCH_SLURM_FULL=1 runs the whole smoke tier. BENCH_SLURM_PROFILE=<dir> tries
another profile; BENCH_REQUIRE_SLURM=1 makes a cluster that fails to start an error, not a skip.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow import ROOT, SMOKE, copy_repository, environment, job_counts

from bench.columns import TIMING_COLUMNS

START = ROOT / "scripts" / "slurm" / "start.sh"
STOP = ROOT / "scripts" / "slurm" / "stop.sh"
PROFILE = os.environ.get("BENCH_SLURM_PROFILE", "profiles/slurm")
SWEEP = yaml.safe_load((ROOT / SMOKE).read_text())["sweep"]
TARGET = "results"  # the rule that asks for results/<sweep>/{runs,curves}.parquet (no figures, no paper)
LOCAL_RULES = {"results", "all", "figures"}  # localrules of the Snakefile: never submitted
# What the test cluster needs on top of the profile: it has no accounting database, so no sacct
# (status from squeue) and no accounts; and status checks from 2 s on rather than 40 s.
CLUSTER_ARGS = ("--slurm-status-command", "squeue", "--slurm-no-account",
                "--slurm-init-seconds-before-status-checks", "2")
EXIT_UNSUPPORTED = 3  # start.sh: this machine cannot host a cluster
def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command``; on timeout kill its whole process group and fail with the output so far."""
    process = subprocess.Popen(command, cwd=cwd, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command)} ran over {timeout:.0f} s:\n{tail(output)}")
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, env=environment()).stdout


@pytest.fixture(scope="module")
def cluster():
    """A running one-node SLURM cluster (scripts/slurm/start.sh), stopped afterwards; skips where none can start."""
    if sys.platform != "linux":
        pytest.skip("a SLURM test cluster needs Linux (scripts/slurm/start.sh)")
    if os.geteuid() != 0:
        pytest.skip("scripts/slurm/start.sh must run as root (it installs munge and slurm and starts their daemons)")
    was_running = "slurmctld already runs" in subprocess.run(
        ["bash", "-c", f'. "{START.parent}/common.sh"; live_pid "$RUN_DIR/slurmctld.pid" >/dev/null '
                       '&& echo "slurmctld already runs"'], capture_output=True, text=True).stdout
    try:
        started = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(STOP)], capture_output=True, timeout=120)
        pytest.skip("scripts/slurm/start.sh did not finish within 10 minutes (package installation?)")
    if started.returncode != 0:
        subprocess.run(["bash", str(STOP)], capture_output=True, timeout=120)
        why = tail(started.stderr + started.stdout, 15)
        if started.returncode == EXIT_UNSUPPORTED:
            pytest.skip(f"no SLURM test cluster on this machine: {why.splitlines()[-1] if why else ''}")
        message = f"scripts/slurm/start.sh failed (exit {started.returncode}):\n{why}"
        if os.environ.get("BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    yield
    if not was_running:
        stopped = subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr


def smoke_configfiles(work: Path) -> list[str]:
    """The smoke tier, cut to its first problem unless BENCH_SLURM_FULL=1 (see the module docstring)."""
    if os.environ.get("BENCH_SLURM_FULL") == "1":
        return [SMOKE]
    first = yaml.safe_load((ROOT / SMOKE).read_text())["problems"][:1]
    overlay = work / "slurm-test-overlay.yaml"
    overlay.write_text(yaml.safe_dump({"problems": first}))
    return [SMOKE, str(overlay)]


def read(work: Path, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(work / "results" / SWEEP / f"{table}.parquet")
    frame = frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
    keys = ["run_id", "step"] if "step" in frame.columns else ["run_id"]
    return frame.sort_values(keys).reset_index(drop=True)


def test_smoke_tier_on_slurm_matches_a_local_run(cluster, tmp_path: Path) -> None:
    if not (ROOT / PROFILE / "config.yaml").is_file():
        pytest.fail(f"no SLURM profile at {PROFILE}/config.yaml")
    on_slurm = copy_repository(tmp_path / "slurm")
    local = copy_repository(tmp_path / "local")
    snakemake = [sys.executable, "-m", "snakemake"]

    result = run([*snakemake, TARGET, "--profile", PROFILE, *CLUSTER_ARGS,
                  "--configfile", *smoke_configfiles(on_slurm)], on_slurm, timeout=420)
    slurm_output = result.stdout
    assert result.returncode == 0, f"snakemake --profile {PROFILE} failed:\n{tail(slurm_output, 60)}"

    reference = run([*snakemake, TARGET, "--cores", "2", "--configfile", *smoke_configfiles(local)],
                    local, timeout=300)
    assert reference.returncode == 0, f"local snakemake run failed:\n{tail(reference.stdout, 60)}"

    # Every job but the local rules was submitted with sbatch, and slurmctld saw exactly those batch jobs.
    counts = job_counts(slurm_output)
    expected = sum(n for rule, n in counts.items() if rule not in LOCAL_RULES | {"total"})
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_output)
    assert counts.get("train", 0) >= 1 and len(job_ids) == expected, (counts, job_ids, tail(slurm_output))
    log_file = re.search(r"SlurmctldLogFile\s*=\s*(\S+)", slurm("scontrol", "show", "config")).group(1)
    submitted = set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", Path(log_file).read_text()))
    assert set(job_ids) <= submitted, f"jobs {set(job_ids) - submitted} are not in {log_file}"
    states = dict(line.split("|") for line in slurm("squeue", "--noheader", "--states=all", "--format=%i|%T",
                                                     "--jobs", ",".join(job_ids)).split())
    assert states == dict.fromkeys(job_ids, "COMPLETED"), states

    for table in ("runs", "curves"):
        pd.testing.assert_frame_equal(read(on_slurm, table), read(local, table), check_exact=True)
