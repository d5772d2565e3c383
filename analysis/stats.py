"""The three functions ``bench.publish``'s thinning of committed curves reads, under their former home.

The statistics live in their own modules (``analysis.tuning``, ``analysis.curves``,
``analysis.survival``); nothing in the analysis imports this module, which goes once
``bench.publish`` no longer reads these names here.
"""

from __future__ import annotations

from analysis.curves import explosion_traces
from analysis.survival import steps_to_target
from analysis.tuning import best_tuned_runs

__all__ = ["best_tuned_runs", "explosion_traces", "steps_to_target"]
