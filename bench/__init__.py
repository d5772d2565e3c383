"""Exploding-gradient benchmark: lockstep training of many runs, strategies as transforms."""

__version__ = "0.1.0"
