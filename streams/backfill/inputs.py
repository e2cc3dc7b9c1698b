"""The backfill's input: what the file is, how it is cut into chunks, and how a chunk is read.

A JSONL file is cut into byte ranges (a line belongs to the range its first byte is in), a
parquet file into row groups, and each chunk is read by any worker, from a local path or
any Beam file system (``gs://``, ``s3://``; Beam is imported only for those). A record's
position is its 0-based line number (parquet: row number) in the file.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from rluf.errors import InputFileError
from rluf.records import TopicPartition

__all__ = [
    "BackfillInput",
    "Chunk",
    "InputFormat",
    "Lines",
    "backfill_app_id",
    "inspect_input",
    "read_chunk",
    "row_to_json",
]

InputFormat = Literal["jsonl", "parquet"]

_CHUNK_BYTES: Final = 16 * 1024 * 1024
_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson")
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_PARQUET_MAGIC: Final = b"PAR1"
_VALUE_COLUMN: Final = "value"

Chunk = tuple[int, int, int]  # (chunk index, start, stop): byte range (JSONL) or row group (parquet, start=stop)
Lines = tuple[bytes | None, ...]  # one chunk's records in order; None keeps the place of a blank line


@dataclass(frozen=True)
class BackfillInput:
    """What the driver learned about the input file before building the pipeline.

    Attributes:
        path: The file, a local path or a Beam file-system URI (``gs://…``, ``s3://…``).
        topic: The file's name; the ``source_topic`` of every row it produces.
        format: How records are read from it.
        size: Bytes.
        app_id: Names the backfill's Delta app transactions (stable for the same file).
        chunks: Units of parallel reading, in file order.
    """

    path: str
    topic: str
    format: InputFormat
    size: int
    app_id: str
    chunks: tuple[Chunk, ...]

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, 0)


def _is_uri(path: str) -> bool:
    return "://" in path


def _open(path: str) -> IO[bytes]:
    if _is_uri(path):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        handle: IO[bytes] = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        return handle
    return open(path, "rb")


def _stat(path: str) -> tuple[int, float, str]:
    """Return (size in bytes, mtime in epoch seconds, identity) or raise InputFileError."""
    if _is_uri(path):
        from apache_beam.io.filesystems import FileSystems

        try:
            found = FileSystems.match([path])[0].metadata_list
        except Exception as exc:  # Beam raises BeamIOError or a file-system specific error
            raise InputFileError(path, f"cannot look it up: {str(exc).splitlines()[0]}") from exc
        if not found:
            raise InputFileError(path, "file not found")
        meta = found[0]
        return int(meta.size_in_bytes), float(meta.last_updated_in_seconds or 0.0), path
    local = Path(path)
    if not local.exists():
        raise InputFileError(path, "file not found")
    if local.is_dir():
        raise InputFileError(path, "is a directory, expected a .jsonl or .parquet file")
    st = local.stat()
    return st.st_size, st.st_mtime_ns / 1e9, str(local.resolve())


def backfill_app_id(identity: str, size: int, mtime: float) -> str:
    """Return the Delta app id of a backfill of one file version.

    Stable for the same path, size and modification time, so a re-run finds the checkpoint
    of the earlier run; a rewritten file is a new backfill (its rows still land once: the
    sink drops rows whose key is already in the lake).

    Args:
        identity: Absolute path or URI of the file.
        size: Bytes.
        mtime: Modification time, epoch seconds.
    """
    digest = hashlib.sha256(f"{identity}\n{size}\n{mtime:.6f}".encode()).hexdigest()[:16]
    return f"backfill-{digest}"


def _sniff(path: str, head: bytes) -> InputFormat:
    name = posixpath.basename(path).lower()
    if name.endswith(_PARQUET_SUFFIXES):
        if head[:4] != _PARQUET_MAGIC:
            raise InputFileError(path, "not a parquet file (no PAR1 header)")
        return "parquet"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if head[:4] == _PARQUET_MAGIC:
        return "parquet"
    if head.lstrip()[:1] in (b"{", b""):
        return "jsonl"
    raise InputFileError(path, "not a JSONL or parquet file; give a .jsonl (one JSON event per line) or .parquet file")


def inspect_input(source: Path | str, *, chunk_bytes: int = _CHUNK_BYTES) -> BackfillInput:
    """Check the input file and plan how it is read.

    Args:
        source: A ``.jsonl`` file (one wire event per line) or a ``.parquet`` file (one
            event per row: a ``value`` column holding the raw JSON, e.g. a Kafka topic dump,
            or else the event fields as columns; see ``row_to_json``). Other names are
            sniffed: parquet by its magic bytes, JSONL when it starts with ``{``.
        chunk_bytes: Size of a JSONL read chunk; parquet is read by row group.

    Raises:
        InputFileError: the file is missing, a directory, unreadable or of another format.
    """
    path = str(source)
    size, mtime, identity = _stat(path)
    try:
        with _open(path) as fh:
            head = fh.read(64)
            fmt = _sniff(path, head)
            if fmt == "parquet":
                parquet = _parquet_file(fh, path)
                schema = parquet.schema_arrow
                if _VALUE_COLUMN in schema.names:
                    kind = schema.field(_VALUE_COLUMN).type
                    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_string(kind)
                            or pa.types.is_large_string(kind)):
                        raise InputFileError(path, f"column `value` must hold the raw JSON as binary or string, "
                                                   f"not {kind}; rename it to read the columns as event fields")
                chunks = tuple((i, i, i) for i in range(parquet.metadata.num_row_groups))
            else:
                step = max(1, chunk_bytes)
                chunks = tuple((i, start, min(size, start + step)) for i, start in enumerate(range(0, size, step)))
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    return BackfillInput(path=path, topic=posixpath.basename(path.rstrip("/")), format=fmt, size=size,
                         app_id=backfill_app_id(identity, size, mtime), chunks=chunks)


def _parquet_file(fh: IO[bytes], path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(fh)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(path, f"not a readable parquet file: {str(exc).splitlines()[0]}") from exc


def _read_jsonl_chunk(path: str, start: int, stop: int) -> Lines:
    """Lines whose first byte lies in ``[start, stop)``, trailing newline removed; blank ones as None."""
    out: list[bytes | None] = []
    with _open(path) as fh:
        if start > 0:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                fh.readline()  # this line began in the previous chunk, which reads it whole
        pos = fh.tell()
        while pos < stop:
            raw = fh.readline()
            if not raw:
                break
            pos += len(raw)
            line = raw.rstrip(b"\r\n")
            out.append(line if line.strip() else None)
    return tuple(out)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def row_to_json(row: Mapping[str, Any]) -> bytes:
    """Serialise one parquet row (event fields as columns) back to a wire event.

    Null columns are left out, since a file holding both event types has every column of
    both, null where a type lacks it; an explicit JSON ``null`` in the original event is
    therefore not preserved. Timestamps become ISO-8601 strings; timestamps stored without
    a time zone are taken as UTC.
    """
    return json.dumps({k: v for k, v in row.items() if v is not None}, default=_json_default,
                      ensure_ascii=False).encode("utf-8")


def _read_parquet_chunk(path: str, row_group: int) -> Lines:
    """One row group's records; a ``value`` column is taken as the raw payload, else rows as JSON."""
    with _open(path) as fh:
        table = _parquet_file(fh, path).read_row_group(row_group)
    if _VALUE_COLUMN in table.column_names:
        out: list[bytes | None] = []
        for value in table.column(_VALUE_COLUMN).to_pylist():
            if isinstance(value, str):
                value = value.encode("utf-8")
            out.append(value if value else None)  # a null payload is skipped, like a blank line
        return tuple(out)
    return tuple(row_to_json(row) for row in table.to_pylist())


def read_chunk(path: str, fmt: InputFormat, chunk: Chunk) -> Lines:
    """Read one chunk of ``path``: its lines (JSONL) or its row group's records (parquet)."""
    _, start, stop = chunk
    return _read_parquet_chunk(path, start) if fmt == "parquet" else _read_jsonl_chunk(path, start, stop)
