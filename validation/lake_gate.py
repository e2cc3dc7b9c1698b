"""The lake's data-quality gate: read the lake (and optional extra inputs), run every suite, write Data Docs.

``validate_lake`` is the gate: ``rluf validate data`` prints its report and exits non-zero on
failure, and retraining calls ``require_passing`` on it and refuses to train on failed data.
The suites run through ``validation.ge_validator.GeValidator`` (the GX context, the result
format and the Data Docs are described there).
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from features.lake.reader import read_table, table_exists
from features.lake.schema import CORRECTIONS_TABLE, QUARANTINE_SCHEMA, QUARANTINE_TABLE, TRIPLES_TABLE
from rluf.errors import InputFileError
from rluf.settings import ValidationSettings
from validation.docs_offline import OfflineReport
from validation.expectations import quarantine_suite, raw_events_suite, training_set_suite, triples_suite
from validation.gate_results import GateResult, SuiteResult
from validation.ge_validator import GeValidator

__all__ = ["accepted_event_count", "read_events_jsonl", "validate_lake"]

logger = logging.getLogger(__name__)

_TRIPLE_READ_COLUMNS: Final = (
    "response_id", "conversation_id", "user_id", "context", "response", "label", "weight", "ts",
    "window_closed_at", "reaction_sources", "date",
)
_RAW_COLUMNS: Final = ("type", "event_id", "response_id", "conversation_id", "user_id", "context", "response",
                       "policy_version", "reaction", "action", "ts")


def accepted_event_count(triples: pd.DataFrame, corrections: int) -> int:
    """Count the input events the lake accepted: responses, their accepted reactions, late corrections.

    A triple is one response event plus the reactions that decided its label
    (``reaction_sources``); a label correction is one late reaction. Reactions that were
    accepted but did not change anything leave no row, so this is a lower bound and the
    quarantine rate an upper bound: the gate errs on the side of alarming.
    """
    reactions = 0
    if "reaction_sources" in triples.columns:
        reactions = int(sum(len(v) for v in triples["reaction_sources"] if v is not None))
    return len(triples) + reactions + corrections


def read_events_jsonl(path: Path, *, limit: int | None = 10_000) -> pd.DataFrame:
    """Read up to ``limit`` raw events (one JSON object a line) into a frame, without validating them.

    Lines that are not JSON objects become rows with no fields, so the raw-events suite counts
    them (a missing ``type``). Unknown fields are dropped: only the contract's columns are kept.

    Raises:
        InputFileError: the file cannot be read.
    """
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if limit is not None and len(rows) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    value = None
                rows.append({k: value.get(k) for k in _RAW_COLUMNS} if isinstance(value, dict) else {})
    except OSError as exc:
        raise InputFileError(str(path), f"cannot read raw events ({exc.strerror or exc})") from exc
    return pd.DataFrame(rows, columns=list(_RAW_COLUMNS))


def _read_training_set(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputFileError(str(path), "no training set here; export one with the feature store")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise InputFileError(str(path), f"not a readable parquet training set ({exc})") from exc


def validate_lake(
    lake_root: str,
    settings: ValidationSettings | None = None,
    *,
    now: datetime,
    reports_dir: Path | None = None,
    storage_options: Mapping[str, str] | None = None,
    training_set: Path | None = None,
    raw_events: Path | None = None,
    raw_events_limit: int = 10_000,
    build_docs: bool = True,
    result_format: Literal["SUMMARY", "BOOLEAN_ONLY"] = "SUMMARY",
) -> GateResult:
    """Run the data-quality gate on the current lake and write the Data Docs.

    Suites: ``raw_events`` (when ``raw_events`` is given), ``triples``, ``quarantine`` and
    ``training_set`` (when ``training_set`` is given).

    Args:
        lake_root: Lake root (``Settings.lake_root``).
        settings: ``Settings.validation`` (thresholds, ``reports_dir``), or bare thresholds.
        now: The clock for the freshness rule, aware (the CLI passes ``datetime.now(UTC)``).
        reports_dir: Where the Data Docs go; default ``settings.reports_dir`` (or ``reports``).
        storage_options: Object-store options (``Settings.lake.storage_options``).
        training_set: A training-set parquet file or folder to check as well.
        raw_events: A JSONL file of raw input events; its first ``raw_events_limit`` lines are checked.
        build_docs: Write the Data Docs site (off in tight loops).
        result_format: GX result detail, see ``GeValidator``.

    Raises:
        TableMissingError: no ``triples`` table yet.
        InputFileError: the training set or the raw events cannot be read.
    """
    folder = reports_dir or Path(getattr(settings, "reports_dir", "reports"))
    validator = GeValidator(folder, result_format=result_format, run_time=now)
    results: list[SuiteResult] = []
    if raw_events is not None:
        events = read_events_jsonl(raw_events, limit=raw_events_limit)
        results.append(validator.validate("raw_events", events, raw_events_suite(settings)))
    triples = read_table(lake_root, TRIPLES_TABLE, columns=_TRIPLE_READ_COLUMNS, storage_options=storage_options)
    corrections = 0
    if table_exists(lake_root, CORRECTIONS_TABLE, storage_options=storage_options):
        corrections = len(read_table(lake_root, CORRECTIONS_TABLE, columns=["correction_id"],
                                     storage_options=storage_options))
    if table_exists(lake_root, QUARANTINE_TABLE, storage_options=storage_options):
        quarantine = read_table(lake_root, QUARANTINE_TABLE, columns=["quarantine_id", "reason", "quarantined_at"],
                                storage_options=storage_options)
    else:
        quarantine = QUARANTINE_SCHEMA.empty_table().select(["quarantine_id", "reason", "quarantined_at"]).to_pandas()
    accepted = accepted_event_count(triples, corrections)
    results.append(validator.validate("triples", triples, triples_suite(settings, now=now)))
    results.append(validator.validate("quarantine", quarantine, quarantine_suite(settings, accepted_events=accepted)))
    if training_set is not None:
        frame = _read_training_set(training_set)
        results.append(validator.validate("training_set", frame, training_set_suite(settings)))
    del triples, quarantine
    gc.collect()
    index: Path | None = None
    offline: OfflineReport | None = None
    if build_docs:
        index = validator.build_docs()
        offline = validator.offline
    gate = GateResult(tuple(results), index, offline)
    logger.info("data-quality gate %s (%s)", "passed" if gate.success else "FAILED",
                ", ".join(f"{r.suite} {r.passed}/{r.expectations}" for r in gate.rows()))
    return gate
