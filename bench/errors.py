"""The two kinds of bad input the command line reports in one line (exit status 2).

Defined apart from the modules that raise them (bench.sweep, bench.store), so that
``python -m bench`` can catch them without importing torch, pandas or pyarrow first.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem, described in one line naming the key and what is allowed."""


class StoreError(ValueError):
    """A results file that cannot be read as the table it should be; names the file."""
