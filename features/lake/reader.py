"""Read helpers for the Delta lake, shared by Feast, the GX gates, the CLI and the sink.

Every reader in the project goes through ``read_table`` because reading a Delta table the
obvious way is not safe for a command whose exit code matters: with deltalake 1.6.6 and
pyarrow 25, ``DeltaTable.to_pyarrow_table()`` makes a short script abort at interpreter
exit ("terminate called without an active exception", exit code 134) in most runs. The
dataset that delta-rs builds reads files through a Python filesystem object
(``DeltaStorageHandler``), and Arrow's I/O threads still call into it while the
interpreter tears down. ``read_table`` therefore scans local tables with Arrow's native
``LocalFileSystem`` (no Python in the I/O threads at all) and object-store tables
single-threaded, and always hands back a pandas DataFrame, so no Arrow scanner outlives
the call.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, SchemaMismatchError, TableNotFoundError

from features.lake.schema import table_uri
from rluf.errors import LakeError, RlufError, TableMissingError

__all__ = [
    "Filters",
    "LakeError",
    "history",
    "lake_error",
    "open_table",
    "read_table",
    "table_exists",
    "table_version",
]

logger = logging.getLogger(__name__)

Filters: TypeAlias = Sequence[tuple[str, str, Any]] | Sequence[Sequence[tuple[str, str, Any]]] | pds.Expression
"""Row filters: DNF tuples as in ``pyarrow.parquet`` (``[("date", ">=", "2026-11-01")]``) or an expression."""


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def lake_error(exc: BaseException, *, uri: str, action: str) -> RlufError:
    """Translate a deltalake/pyarrow error into the rluf error a user can act on (one line).

    delta-rs raises its own ``DeltaError`` tree for most failures, but a plain ``Exception``
    for others (a column that cannot be cast on write, for instance), so callers catch
    ``Exception`` at the edge and pass it here.
    """
    if isinstance(exc, RlufError):
        return exc
    if isinstance(exc, TableNotFoundError):
        return TableMissingError(uri)
    if isinstance(exc, CommitFailedError):
        return LakeError(uri, action, _first_line(exc), "another writer committed first; retry the step")
    if isinstance(exc, SchemaMismatchError):
        return LakeError(uri, action, _first_line(exc), "the rows do not match the table schema")
    return LakeError(uri, action, _first_line(exc))


def open_table(
    root: str, name: str, *, version: int | None = None, storage_options: Mapping[str, str] | None = None
) -> DeltaTable:
    """Open table ``name`` under the lake ``root``, at ``version`` if given.

    Raises:
        TableMissingError: no Delta table there yet.
        LakeError: the table (or that version of it) cannot be loaded.
    """
    uri = table_uri(root, name)
    try:
        return DeltaTable(uri, version=version, storage_options=dict(storage_options or {}) or None)
    except Exception as exc:
        raise lake_error(exc, uri=uri, action=f"open (version {version})" if version is not None else "open") from exc


def _local_path(dt: DeltaTable) -> str | None:
    parsed = urlparse(dt.table_uri)
    if parsed.scheme in ("", "file"):
        return os.path.abspath(unquote(parsed.path))
    return None


def _expression(filters: Filters | None) -> pds.Expression | None:
    if filters is None or isinstance(filters, pds.Expression):
        return filters
    if not filters:
        return None
    return pq.filters_to_expression(filters)  # type: ignore[arg-type]


def _scan(dt: DeltaTable, columns: Sequence[str] | None, filters: Filters | None) -> pd.DataFrame:
    local = _local_path(dt)
    expression = _expression(filters)
    cols = list(columns) if columns is not None else None
    if local is not None:
        # Native filesystem: Arrow's I/O threads never call back into Python.
        dataset = dt.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(local, pafs.LocalFileSystem()))
        table = dataset.to_table(columns=cols, filter=expression)
    else:
        # delta-rs' Python filesystem handler: scan on the calling thread only.
        dataset = dt.to_pyarrow_dataset()
        table = dataset.to_table(columns=cols, filter=expression, use_threads=False)
    frame = table.to_pandas()
    del table, dataset
    if local is None:
        gc.collect()  # let the Python filesystem handler go now, not during interpreter teardown
    return frame


def read_table(
    root: str,
    name: str,
    *,
    version: int | None = None,
    columns: Sequence[str] | None = None,
    filters: Filters | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read table ``name`` under the lake ``root`` into a DataFrame.

    Safe to call from a short-lived command: it leaves no Arrow scanner thread behind, so
    the process exits with its own exit code (see the module docstring).

    Args:
        root: Lake root, a local path or an object-store URI.
        name: Table name (``"triples"``, ``"label_corrections"``, ``"quarantine"``).
        version: Delta version to read (time travel); the newest if None.
        columns: Columns to read; all if None.
        filters: Row filters; partitions (``date``) that cannot match are not read.
        storage_options: Object-store options as delta-rs takes them.

    Raises:
        TableMissingError: no Delta table there yet.
        LakeError: the table cannot be read.
    """
    dt = open_table(root, name, version=version, storage_options=storage_options)
    try:
        frame = _scan(dt, columns, filters)
    except Exception as exc:
        raise lake_error(exc, uri=table_uri(root, name), action="read") from exc
    logger.debug("read %d rows from %s", len(frame), table_uri(root, name))
    return frame


def table_exists(root: str, name: str, *, storage_options: Mapping[str, str] | None = None) -> bool:
    """Return whether a Delta table ``name`` exists under ``root``."""
    uri = table_uri(root, name)
    try:
        return DeltaTable.is_deltatable(uri, storage_options=dict(storage_options or {}) or None)
    except Exception as exc:
        raise lake_error(exc, uri=uri, action="look up") from exc


def table_version(root: str, name: str, *, storage_options: Mapping[str, str] | None = None) -> int:
    """Return the newest committed version of table ``name`` (0 right after it was created).

    Raises:
        TableMissingError: no Delta table there yet.
    """
    return open_table(root, name, storage_options=storage_options).version()


def history(
    root: str, name: str, *, limit: int | None = None, storage_options: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Return the commit infos of table ``name``, newest first, at most ``limit`` of them.

    Each entry has delta-rs' keys (``version``, ``timestamp`` in epoch milliseconds,
    ``operation``, ``operationMetrics``) plus any custom commit metadata, such as the
    ``rluf.checkpoint`` that the landing sink records.

    Raises:
        TableMissingError: no Delta table there yet.
    """
    dt = open_table(root, name, storage_options=storage_options)
    try:
        return dt.history(limit)
    except Exception as exc:
        raise lake_error(exc, uri=table_uri(root, name), action="read the history of") from exc

