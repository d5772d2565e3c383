"""The one atomic writer: a file appears whole or not at all.

Every file the benchmark writes (result tables, checkpoints, cached data sets,
generated TeX, the sweep config, perf records) goes through :func:`writing`:
the content is written to a hidden temporary file beside the target, named by
the writing process, then renamed over the target (``os.replace`` is atomic on
POSIX). A process killed at any moment leaves either the old file or the new
one, never a torn one, and two processes never share a temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def writing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The parent folder is created. On an exception the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, only_if_changed: bool = False) -> bool:
    """Write ``text`` to ``path`` atomically; return whether the file was written.

    With ``only_if_changed``, a file that already holds exactly ``text`` is left
    untouched, so that its modification time (which Snakemake reads) stays.
    """
    path = Path(path)
    if only_if_changed and path.is_file() and path.read_text() == text:
        return False
    with writing(path) as partial:
        partial.write_text(text)
    return True
