"""Pure functions of runs tables computed once per process (:func:`memoised`).

The paper's numbers, tables and questions read the same statistics of the same runs many times over: the
best-tuned runs of the whole sweep feed the best-tuned table, the ranking, the macros and the leaderboard;
every per-family appendix table starts from the summaries of the whole sweep. A memoised function keeps its
results for the arguments it was called with, compared by content: a table (DataFrame or Series) by its
columns, dtypes, shape and a hash of every value and index label (``pandas.util.hash_pandas_object``), any
other argument by value (lists and dicts element by element), a function or reader by identity. A call with
the same arguments returns a copy of the first call's result, so that a caller who edits what it gets
never changes what the next one gets.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

CACHE_SIZE = 512
"""Results kept per memoised function; the least recently used go first."""

Function = TypeVar("Function", bound=Callable[..., Any])


def content_key(value: Any) -> Any:
    """A hashable key equal for equal arguments: tables by content (see the module docstring), sequences and
    mappings element by element, scalars with their type (``1`` and ``1.0`` differ); a TypeError for a value that
    is none of these and not hashable."""
    if isinstance(value, pd.DataFrame | pd.Series):
        frame = value if isinstance(value, pd.DataFrame) else value.to_frame()
        digest = hashlib.blake2b(digest_size=16)
        digest.update(pd.util.hash_pandas_object(frame.index).to_numpy().tobytes())
        for _, column in frame.items():
            digest.update(_column_digest(column))
        return (type(value).__name__, tuple(frame.columns), tuple(str(d) for d in frame.dtypes), value.shape,
                str(value.index.dtype), digest.digest())
    if isinstance(value, list | tuple):
        return (type(value).__name__, *(content_key(v) for v in value))
    if isinstance(value, Mapping):
        return ("mapping", *((content_key(k), content_key(v)) for k, v in value.items()))
    hash(value)
    return (type(value).__name__, value)


def _column_digest(column: pd.Series) -> bytes:
    """A digest of a column's values: an Arrow string column's from its offsets, characters and nulls (as fast as
    copying them), any other's from ``pandas.util.hash_array`` of its values."""
    values = column.array
    arrow = values.__arrow_array__() if hasattr(values, "__arrow_array__") else None
    if isinstance(arrow, pa.ChunkedArray) and (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        digest = hashlib.blake2b(digest_size=16)
        width = np.int32 if pa.types.is_string(arrow.type) else np.int64
        for chunk in arrow.chunks:
            _, offsets, characters = chunk.buffers()
            bounds = np.frombuffer(offsets, dtype=width)[chunk.offset:chunk.offset + len(chunk) + 1]
            digest.update((bounds - bounds[0]).tobytes())
            if characters is not None:
                digest.update(memoryview(characters)[int(bounds[0]):int(bounds[-1])])
            if chunk.null_count:
                digest.update(chunk.is_null().to_numpy(zero_copy_only=False).tobytes())
        return digest.digest()
    return pd.util.hash_array(column.to_numpy()).tobytes()


def _copy(value: Any) -> Any:
    """A copy of a result that its receiver may edit freely (tables copied, containers copied deeply)."""
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.copy()
    return copy.deepcopy(value)


def memoised(function: Function) -> Function:
    """``function`` (a pure function of its arguments: tables, settings) with its results kept per arguments.

    Arguments are bound to the signature first (defaults applied), so that a value passed by position or by
    name is one call. Arguments without a :func:`content_key` (unhashable objects) call ``function`` anew.
    """
    signature = inspect.signature(function)
    cache: OrderedDict[Any, Any] = OrderedDict()

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            key = content_key(tuple(bound.arguments.items()))
        except TypeError:
            return function(*args, **kwargs)
        if key in cache:
            cache.move_to_end(key)
            return _copy(cache[key])
        result = function(*args, **kwargs)
        cache[key] = _copy(result)
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return result

    wrapper.cache = cache  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
