"""The backup's deflate on several cores (backupjob/deflate.py) and its stored filestore entries: the zip that
comes out is one that zipfile (what Odoo's restore_db uses) reads back byte for byte, CRCs checked."""

from __future__ import annotations

import io
import random
import zipfile
import zlib
from pathlib import Path

import pytest

from odoo_operator.backupjob import deflate
from odoo_operator.backupjob.create import _compress_type


def sql_like(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 8)).hex().encode() for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += b"\t".join(rng.choice(words) for _ in range(8)) + b"\n"
    return bytes(out[:size])


@pytest.mark.parametrize("size", [0, 1, deflate.BLOCK - 1, deflate.BLOCK, 3 * deflate.BLOCK + 12345])
def test_parallel_deflate_is_one_stream_that_inflates_to_the_input(size: int) -> None:
    data = sql_like(size)
    compressor = deflate.ParallelDeflate(1, workers=3)
    out = bytearray()
    for start in range(0, len(data), 300_000):  # pieces that do not line up with the blocks
        out += compressor.compress(data[start:start + 300_000])
    out += compressor.flush()
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(bytes(out)) == data
    assert inflater.eof and not inflater.unused_data  # the final block ends the stream exactly


def test_primed_blocks_compress_as_well_as_one_stream() -> None:
    data = sql_like(4 * deflate.BLOCK)
    compressor = deflate.ParallelDeflate(1, workers=2)
    parallel = len(compressor.compress(data) + compressor.flush())
    single = zlib.compressobj(1, zlib.DEFLATED, -15)
    serial = len(single.compress(data) + single.flush())
    assert parallel < serial * 1.01


def test_a_zip_entry_deflated_by_threads_reads_back_with_its_crc() -> None:
    data = sql_like(5 * deflate.BLOCK + 7)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("dump.sql", "w", force_zip64=True) as entry:
            assert deflate.deflate_entry(entry, 1, 2) is not None
            for start in range(0, len(data), 1 << 20):
                entry.write(data[start:start + (1 << 20)])
        archive.writestr("manifest.json", "{}")
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        assert archive.testzip() is None
        assert archive.read("dump.sql") == data
        assert archive.getinfo("dump.sql").compress_size < len(data) / 2


def test_one_worker_leaves_zipfile_its_own_compressor() -> None:
    with zipfile.ZipFile(io.BytesIO(), "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("dump.sql", "w") as entry:
            assert deflate.deflate_entry(entry, 1, 1) is None
            entry.write(b"SELECT 1;\n")


def test_incompressible_files_are_stored_and_text_is_deflated(tmp_path: Path) -> None:
    image, text, empty = tmp_path / "image", tmp_path / "text", tmp_path / "empty"
    image.write_bytes(random.Random(2).randbytes(200_000))
    text.write_bytes(sql_like(200_000))
    empty.write_bytes(b"")
    assert _compress_type(image) == zipfile.ZIP_STORED
    assert _compress_type(text) == zipfile.ZIP_DEFLATED
    assert _compress_type(empty) == zipfile.ZIP_STORED
