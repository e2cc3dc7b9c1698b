"""Maintenance of the Delta tables: compaction, vacuum and history (time travel lineage).

The stream worker appends small files several times a second; `optimize` compacts them
(a new version, same rows), `vacuum` deletes files no version within the retention period
needs, and `history` shows every commit with its operation and, for the worker's commits,
the resume positions it recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from features.lake.reader import history, lake_error, open_table, table_exists
from features.lake.schema import TABLE_SCHEMAS, table_uri

__all__ = ["LAKE_TABLES", "MaintenanceResult", "lake_history", "optimize_tables", "vacuum_tables"]

logger = logging.getLogger(__name__)

LAKE_TABLES: tuple[str, ...] = tuple(TABLE_SCHEMAS)


@dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance operation did to one table."""

    table: str
    version_before: int
    version_after: int
    files_removed: int
    files_added: int
    detail: str = ""


def _tables(root: str, names: Sequence[str] | None, storage_options: Mapping[str, str] | None) -> list[str]:
    wanted = list(names) if names else list(LAKE_TABLES)
    unknown = [n for n in wanted if n not in LAKE_TABLES]
    if unknown:
        raise ValueError(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(LAKE_TABLES)}")
    return [n for n in wanted if table_exists(root, n, storage_options=storage_options)]


def optimize_tables(root: str, names: Sequence[str] | None = None, *, target_size: int | None = None,
                    storage_options: Mapping[str, str] | None = None) -> list[MaintenanceResult]:
    """Compact small files into large ones (a new table version with the same rows)."""
    out = []
    for name in _tables(root, names, storage_options):
        dt = open_table(root, name, storage_options=storage_options)
        before = dt.version()
        try:
            metrics: dict[str, Any] = dt.optimize.compact(target_size=target_size)
        except Exception as exc:
            raise lake_error(exc, uri=table_uri(root, name), action="optimize") from exc
        out.append(MaintenanceResult(name, before, dt.version(), int(metrics.get("numFilesRemoved", 0)),
                                     int(metrics.get("numFilesAdded", 0))))
    return out


def vacuum_tables(root: str, names: Sequence[str] | None = None, *, retention_hours: float = 168.0,
                  dry_run: bool = False, storage_options: Mapping[str, str] | None = None
                  ) -> list[MaintenanceResult]:
    """Delete files that no version newer than ``retention_hours`` refers to.

    Time travel (and rebuilding a training set from its recorded version) only works for
    versions inside the retention period: keep it at least as long as training sets must be
    reproducible.
    """
    out = []
    for name in _tables(root, names, storage_options):
        dt = open_table(root, name, storage_options=storage_options)
        before = dt.version()
        try:
            removed = dt.vacuum(retention_hours=int(retention_hours), dry_run=dry_run,
                                enforce_retention_duration=False)
        except Exception as exc:
            raise lake_error(exc, uri=table_uri(root, name), action="vacuum") from exc
        out.append(MaintenanceResult(name, before, dt.version(), len(removed), 0,
                                     "dry run: nothing deleted" if dry_run else ""))
    return out


def lake_history(root: str, name: str, *, limit: int | None = 20,
                 storage_options: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Commits of one table, newest first: version, time, operation, rows added, checkpoint."""
    rows = []
    for commit in history(root, name, limit=limit, storage_options=storage_options):
        metrics = commit.get("operationMetrics") or {}
        checkpoint = commit.get("rluf.checkpoint")
        rows.append({
            "version": commit.get("version"),
            "timestamp_ms": commit.get("timestamp"),
            "operation": commit.get("operation"),
            "rows_added": metrics.get("num_added_rows", metrics.get("numOutputRows")),
            "files_added": metrics.get("num_added_files", metrics.get("numFilesAdded")),
            "checkpoint": checkpoint.get("offsets") if isinstance(checkpoint, dict) else None,
        })
    return rows
