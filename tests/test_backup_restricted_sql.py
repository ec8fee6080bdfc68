"""What psql reads in a restore (backupjob.pgtools.RestrictedSql), without PostgreSQL: COPY data passes in blocks,
and the result is byte for byte that of the plain line-by-line reading it replaced, whatever the block
boundaries, row lengths and `\\.` look-alikes."""

from __future__ import annotations

import io
import random
import re

import pytest

from odoo_operator.backupjob import pgtools
from odoo_operator.backupjob.artifacts import CHUNK

RESTRICT_LINE = re.compile(rb"^\\(un)?restrict [^\s]+\s*$")
COPY_FROM_STDIN = re.compile(rb"^COPY .* FROM stdin;\s*$")


def line_by_line(data: bytes, piece: int = pgtools.RestrictedSql.PIECE) -> bytes:
    """The reference: every line (in pieces of at most `piece` bytes) looked at, one at a time."""
    source, out, in_copy, line_start = io.BytesIO(data), bytearray(), False, True
    while chunk := source.readline(piece):
        starts, line_start = line_start, chunk.endswith(b"\n")
        if starts:
            if in_copy:
                in_copy = chunk.rstrip(b"\r\n") != b"\\."
            elif RESTRICT_LINE.match(chunk):
                continue
            elif COPY_FROM_STDIN.match(chunk):
                in_copy = True
        out += chunk
    return bytes(out)


def restricted(data: bytes, size: int) -> bytes:
    reader = pgtools.RestrictedSql(io.BytesIO(data))
    out = bytearray()
    while chunk := reader.read(size):
        out += chunk
    key_line, _, rest = bytes(out).partition(b"\n")
    assert re.fullmatch(rb"\\restrict [0-9a-f]{32}", key_line)
    return rest


ATOMS = [b"\n", b"\\.", b"\\.\n", b"\\.\r\n", b"\\.\r\r\n", b"\r", b"x", b"row\tvalue", b"\\\\.\n", b"\\", b".",
         b"COPY public.t (v) FROM stdin;\n", b"COPY t FROM stdin;\r\n", b"\\restrict abc\n", b"\\unrestrict abc \n",
         b"SELECT 1;\n", b"\n\\.", b"y" * 70_000]


@pytest.mark.parametrize("seed", range(4))
def test_the_same_bytes_as_line_by_line(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        data = b"".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 60)))
        assert restricted(data, rng.choice([1, 4096, CHUNK]) if len(data) < 1000 else CHUNK) == line_by_line(data)


def test_copy_data_across_blocks_with_rows_longer_than_a_block() -> None:
    rows = [b"short\n", b"z" * (CHUNK + 5) + b"\n", b"\\\\. escaped\n", b"w" * (3 * CHUNK) + b"\n"] * 3
    data = (b"\\restrict own\nCOPY public.t (v) FROM stdin;\n" + b"".join(rows) + b"\\.\n\\unrestrict own\n"
            b"\\restrict again\nCOPY public.u (v) FROM stdin;\n\\restrict data\n\\.\nSELECT 2;\n")
    out = restricted(data, CHUNK)
    assert out == line_by_line(data)
    assert b"\\restrict own" not in out and b"\\unrestrict own" not in out and b"\\restrict again" not in out
    assert b"\\restrict data\n" in out  # inside COPY: data
    assert out.endswith(b"\\.\nSELECT 2;\n")
