"""Rewrite a study's fingerprint record of format 1 as format 2, where the results are those of the config.

    python scripts/migrate_fingerprint.py study/<sweep> config/<sweep>.yaml

Format 1 of ``study/<sweep>/fingerprint.json`` hashed the config itself: the
sha256 of the canonical JSON (sorted keys, no spaces) of
``bench.sweep.with_defaults(config)`` without device, threads,
checkpoint_every, cuda_graph and slurm_partition. Format 2 (bench/publish.py)
hashes the fingerprints of the config's cells (bench/fingerprint.py), the one
notion of what decides a cell's results that checkpoints and Snakemake use too.

A record of format 1 is rewritten only if its fingerprint matches the config by
the rule of format 1, so that the committed tables are known to be the results
of that config; its other entries (date, torch version, counts, sizes) are
kept. The tables themselves are not touched. Exit status 2 and one line
``error: ...`` where the record does not match or cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from bench import atomic, publish, sweep

FORMAT_1_IGNORED = ("device", "threads", "checkpoint_every", "cuda_graph", "slurm_partition")


def format_1(config: dict[str, Any]) -> str:
    """The fingerprint of format 1 of ``config``."""
    spec = {key: value for key, value in sweep.with_defaults(config).items() if key not in FORMAT_1_IGNORED}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(folder: Path, config_path: Path) -> dict[str, Any]:
    """The record of ``folder`` rewritten in the current format, if it is of format 1 and matches the config."""
    stored = publish.record(folder)
    if stored is None or "fingerprint" not in stored:
        raise ValueError(f"{folder / publish.RECORD}: absent or unreadable")
    if stored.get("format", 1) != 1:
        raise ValueError(f"{folder / publish.RECORD}: of format {stored['format']}, not 1")
    config = sweep.load(config_path)
    if stored["fingerprint"] != format_1(config):
        raise ValueError(f"{folder / publish.RECORD}: does not match {config_path} (format 1): publish it again")
    every = stored.get("every", publish.EVERY)
    migrated = {key: value for key, value in stored.items() if key not in ("fingerprint", "hashed")}
    migrated = {"sweep": migrated.pop("sweep"), "config": migrated.pop("config"), "format": publish.FORMAT,
                "fingerprint": publish.fingerprint(config, every), "hashed": publish.HASHED, **migrated}
    return migrated


def main(argv: list[str]) -> int:
    """Migrate the record of the study folder ``argv[0]`` against the config file ``argv[1]``."""
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    folder, config_path = Path(argv[0]), Path(argv[1])
    try:
        migrated = migrate(folder, config_path)
    except (ValueError, sweep.ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    atomic.write_text(folder / publish.RECORD, json.dumps(migrated, indent=2) + "\n")
    print(f"{folder / publish.RECORD}: format {publish.FORMAT}, fingerprint {migrated['fingerprint'][:16]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
