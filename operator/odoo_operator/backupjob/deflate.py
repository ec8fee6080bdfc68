"""Deflate on several cores, for the zip's dump.sql entry: one deflate stream, made of 1 MiB blocks compressed by
a pool of threads (zlib lets go of the GIL while it compresses), the way pigz does it.

Each block is compressed on its own, primed with the previous block's last 32 KiB (deflate's whole window, so
the ratio is that of one stream) and ended with a sync flush (an empty stored block: the next block starts on a
byte boundary); the concatenation, closed by an empty final block, is a single valid deflate stream that any
unzip (Odoo's restore_db included) inflates. The output comes in the input's order; at most `2 × workers`
blocks are in flight, so memory stays a few MiB.

`ParallelDeflate` has the interface of a `zlib.compressobj` (`compress`, `flush`), which is what zipfile's
entry writer calls: `deflate_entry` puts it in place of the writer's own compressor (zipfile still computes
the CRC-32 and the sizes). What is not here: the zip's layout (create.py, archive.py).
"""

from __future__ import annotations

import collections
import os
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

BLOCK = 1 << 20
WINDOW = 1 << 15  # deflate's window: a block primed with this much of the previous one loses nothing
MAX_WORKERS = 4


def default_workers() -> int:
    """The CPUs this process may run on, at most MAX_WORKERS (a CPU quota lower than that only time-slices)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def _deflate_block(data: bytes, level: int, window: bytes) -> bytes:
    compressor = (zlib.compressobj(level, zlib.DEFLATED, -15, zdict=window) if window
                  else zlib.compressobj(level, zlib.DEFLATED, -15))
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


class ParallelDeflate:
    """A raw deflate stream (zip's method 8) compressed by `workers` threads; `compress` returns what is ready,
    in order, `flush` the rest and the stream's end."""

    def __init__(self, level: int, workers: int) -> None:
        self.level = level
        self.limit = 2 * workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deflate")
        self.pending = bytearray()
        self.window = b""
        self.in_flight: collections.deque[Future[bytes]] = collections.deque()

    def _submit(self, block: bytes) -> None:
        self.in_flight.append(self.pool.submit(_deflate_block, block, self.level, self.window))
        self.window = block[-WINDOW:]

    def _collect(self, wait_for: int) -> bytes:
        """The compressed blocks at the head that are done, waiting until at most `wait_for` are in flight."""
        out = bytearray()
        while self.in_flight and (len(self.in_flight) > wait_for or self.in_flight[0].done()):
            out += self.in_flight.popleft().result()
        return bytes(out)

    def compress(self, data: bytes) -> bytes:
        self.pending += data
        while len(self.pending) >= BLOCK:
            self._submit(bytes(self.pending[:BLOCK]))
            del self.pending[:BLOCK]
        return self._collect(self.limit)

    def flush(self) -> bytes:
        if self.pending:
            self._submit(bytes(self.pending))
            self.pending.clear()
        try:
            out = self._collect(0)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return out + zlib.compressobj(self.level, zlib.DEFLATED, -15).flush()  # an empty final block


def deflate_entry(entry: IO[bytes], level: int, workers: int) -> ParallelDeflate | None:
    """Make zipfile's writer `entry` (from `ZipFile.open(name, "w")` of a ZIP_DEFLATED archive) compress with
    `workers` threads; None (and nothing changed) with one worker. Closing the entry (as its `with` does, whatever
    happened) ends the stream and stops the threads."""
    if workers < 2:
        return None
    if not isinstance(getattr(entry, "_compressor", None), type(zlib.compressobj())):
        raise TypeError(f"{entry!r} is not a deflating zipfile entry writer")
    compressor = ParallelDeflate(level, workers)
    entry._compressor = compressor  # type: ignore[attr-defined]  # zipfile._ZipWriteFile's, since Python 3.6
    return compressor
