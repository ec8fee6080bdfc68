"""The process's memory: glibc's allocator told to keep what a burst freed from staying resident.

A burst of creations allocates many short-lived large objects (API responses, JSON) across the
reconcile threads. glibc gives each thread that allocates its own arena (up to 8 per CPU) and keeps
freed pages mapped, so the resident size stays at the burst's peak long after. Two arenas and an
occasional malloc_trim(0) return that memory; Python's own small-object pools are not affected.
Without glibc (e.g. musl) both are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from typing import Any

M_ARENA_MAX = -8  # mallopt(3)

_libc: Any = None
with contextlib.suppress(OSError, TypeError):
    _libc = ctypes.CDLL(ctypes.util.find_library("c"))
if _libc is not None and not (hasattr(_libc, "mallopt") and hasattr(_libc, "malloc_trim")):
    _libc = None


def limit_arenas(arenas: int = 2) -> None:
    """At most `arenas` malloc arenas for the threads created from now on."""
    if _libc is not None:
        _libc.mallopt(M_ARENA_MAX, arenas)


def trim() -> None:
    """Collect cycles, then give freed heap pages back to the system."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
