"""Host allocator setting for the engine's large per-step buffers.

A lockstep step allocates a few (K, P) buffers (gradients, optimizer state,
new parameters) of megabytes each and frees the previous step's. glibc's
malloc serves blocks that large with ``mmap`` or trims them off the heap when
freed, so every step pays one page fault per 4 KiB page again (about a
thousand per step for the default MLP cell at K = 32). PyTorch's CPU
performance tuning guide advises a caching allocator (jemalloc or TCMalloc
via ``LD_PRELOAD``) for this; :func:`keep_freed_memory` gets the same effect
from glibc itself, with no extra dependency, by raising its ``mmap`` and trim
thresholds (``mallopt``), so freed buffers stay in the heap and are reused.
Peak memory is unchanged: only already used memory is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Keep freed blocks up to 1 GiB in glibc's heap for reuse; True where glibc took the setting."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): its own allocator already caches
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
