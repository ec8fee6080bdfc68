"""The process's memory: glibc's allocator told to keep what a burst freed from staying resident.

A burst of creations allocates many short-lived large objects (API responses, JSON) across the
reconcile threads. glibc gives each thread that allocates its own arena (up to 8 per CPU) and keeps
freed pages mapped, so the resident size stays at the burst's peak long after. Two arenas and an
occasional malloc_trim(0) return that memory; Python's own small-object pools are not affected.
Without glibc (e.g. musl) both are no-ops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc
from collections.abc import Callable, Mapping
from typing import Any

M_ARENA_MAX = -8  # mallopt(3)

_libc: Any = None
with contextlib.suppress(OSError, TypeError):
    _libc = ctypes.CDLL(ctypes.util.find_library("c"))
if _libc is not None and not (hasattr(_libc, "mallopt") and hasattr(_libc, "malloc_trim")):
    _libc = None


SHARED_WORD_MAX = 32  # longer strings (messages, uids, hosts) are mostly unique to their object


def shared_words(value: Any) -> Any:
    """A copy of a JSON value whose keys and short strings are interned: one string object for all equal
    ones across every kept body (a watch event's JSON has its own copy of each), e.g. condition types and
    reasons, phases, label keys and values, versions."""
    if isinstance(value, dict):
        return {sys.intern(key): shared_words(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shared_words(item) for item in value]
    if isinstance(value, str) and len(value) <= SHARED_WORD_MAX:
        return sys.intern(value)
    return value


def limit_arenas(arenas: int = 2) -> None:
    """At most `arenas` malloc arenas for the threads created from now on."""
    if _libc is not None:
        _libc.mallopt(M_ARENA_MAX, arenas)


def trim() -> None:
    """Collect cycles, then give freed heap pages back to the system."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


# ---- diagnostics: where the memory goes (off unless ODOO_OPERATOR_MEMORY_DUMP names a directory) --------

DUMP_ENV = "ODOO_OPERATOR_MEMORY_DUMP"
TRACE_ENV = "ODOO_OPERATOR_MEMORY_TRACE"  # tracemalloc's frames (0: no tracemalloc, dumps only)
_dumps = 0
# name -> a function returning {what: figure}, added to each dump (e.g. the loops' and kopf's structures).
PROBES: dict[str, Callable[[], Mapping[str, Any]]] = {}


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of `obj` and everything it holds (dicts, sequences, sets, objects' attributes), each object
    counted once across calls that share `seen`."""
    seen = set() if seen is None else seen
    total, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__dict__") and not callable(item):
            stack.append(vars(item))
    return total


def enable_dumps(directory: str | None = None, frames: int = 16) -> bool:
    """With ODOO_OPERATOR_MEMORY_DUMP=<dir> (or `directory`): SIGUSR2 writes <dir>/dump-<n>.json (RSS,
    threads, asyncio tasks by coroutine, live objects by type, PROBES) and, unless
    ODOO_OPERATOR_MEMORY_TRACE=0, <dir>/dump-<n>.tracemalloc (tracemalloc runs from now on, `frames` deep).
    Call from the main thread. False when off."""
    directory = directory or os.environ.get(DUMP_ENV)
    if not directory:
        return False
    os.makedirs(directory, exist_ok=True)
    frames = int(os.environ.get(TRACE_ENV) or frames)
    if frames > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR2, lambda signum, frame: dump(directory))
    return True


def dump(directory: str) -> str:
    """Collect, trim, then write the figures and the snapshot; returns the JSON file's path."""
    global _dumps
    _dumps += 1
    trim()
    types: collections.Counter[str] = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    tasks: collections.Counter[str] = collections.Counter()
    with contextlib.suppress(RuntimeError):
        for task in asyncio.all_tasks(asyncio.get_running_loop()):
            coro = task.get_coro()
            tasks[getattr(coro, "__qualname__", type(coro).__qualname__)] += 1
    base = os.path.join(directory, f"dump-{_dumps}")
    rss_kb = 0
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        rss_kb = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    figures: dict[str, Any] = {"rss_kb": rss_kb, "threads": threading.active_count(), "tasks": sum(tasks.values()),
               "tasks_by_coroutine": dict(tasks.most_common()), "objects": dict(types.most_common(200)),
               "traced": tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else None,
               "probes": {}}
    for name, probe in PROBES.items():
        try:
            figures["probes"][name] = dict(probe())
        except Exception as exc:  # a diagnostic never fails the dump
            figures["probes"][name] = {"error": repr(exc)}
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(base + ".tracemalloc")
    with open(base + ".json", "w") as handle:
        json.dump(figures, handle, indent=1)
    return base + ".json"
