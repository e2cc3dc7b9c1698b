"""Run the data-quality suites with Great Expectations and write offline Data Docs.

``validate_lake`` is the gate: ``rluf validate data`` prints its report and exits non-zero on
failure, and retraining calls ``require_passing`` on it and refuses to train on failed data.

GX runs in an *ephemeral* context: nothing is written to a ``gx/`` project folder, the only
output is the Data Docs site under ``<reports_dir>/data_docs``, rebuilt on every run so that
it shows exactly the last gate (the ephemeral stores hold only this run). Results are kept in
GX's SUMMARY format: COMPLETE costs ~1.5x on a large failing batch and adds nothing a
one-line report needs.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.exceptions import DataContextError, GreatExpectationsError

from features.lake.reader import read_table, table_exists
from features.lake.schema import CORRECTIONS_TABLE, QUARANTINE_SCHEMA, QUARANTINE_TABLE, TRIPLES_TABLE
from rluf.errors import DataQualityError, InputFileError
from rluf.settings import ValidationSettings
from validation.docs_offline import OfflineReport, make_offline
from validation.expectations import (
    Suite,
    nested_as_length,
    quarantine_suite,
    raw_events_suite,
    training_set_suite,
    triples_suite,
)

__all__ = [
    "DOCS_DIRNAME",
    "FailedExpectation",
    "GateResult",
    "GeValidator",
    "SuiteResult",
    "SummaryRow",
    "accepted_event_count",
    "read_events_jsonl",
    "require_passing",
    "validate_lake",
]

logger = logging.getLogger(__name__)

DOCS_DIRNAME: Final = "data_docs"
"""Folder under ``reports_dir`` that holds the Data Docs site."""

_SITE_NAME: Final = "rluf_data_docs"
_DATASOURCE: Final = "rluf"
_GENERATED: Final = ("index.html", "expectations", "validations", "static")
_TRIPLE_READ_COLUMNS: Final = (
    "response_id", "conversation_id", "user_id", "context", "response", "label", "weight", "ts",
    "window_closed_at", "reaction_sources", "date",
)
_RAW_COLUMNS: Final = ("type", "event_id", "response_id", "conversation_id", "user_id", "context", "response",
                       "policy_version", "reaction", "action", "ts")


@dataclass(frozen=True)
class FailedExpectation:
    """One failed (or errored) expectation, enough to name it in a one-line report.

    Attributes:
        suite: Suite name (``triples``).
        check: Check within the suite (``rows``, ``daily_love_rate``).
        expectation: GX expectation type (``expect_column_values_to_be_unique``).
        column: The column it reads, if any.
        detail: What was observed (``2 of 10 rows unexpected, e.g. 'r1'``).
    """

    suite: str
    check: str
    expectation: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        target = f"({self.column})" if self.column else ""
        return f"{self.suite}/{self.check}: {self.expectation}{target}: {self.detail}"


@dataclass(frozen=True)
class SuiteResult:
    """The outcome of one suite over one input frame (all of its checks).

    Attributes:
        name: Suite name as reported (``triples``).
        success: True when every expectation of every check passed.
        statistics: ``evaluated``, ``passed``, ``failed`` expectation counts and ``rows`` of the input.
        failed: The failed expectations.
    """

    name: str
    success: bool
    statistics: Mapping[str, int]
    failed: tuple[FailedExpectation, ...]

    @property
    def failures(self) -> list[str]:
        """The failed expectations as readable one-liners."""
        return [str(f) for f in self.failed]

    def failed_expectations(self) -> set[tuple[str, str, str | None]]:
        """Return ``{(check, expectation type, column)}`` of the failures, for assertions and routing."""
        return {(f.check, f.expectation, f.column) for f in self.failed}


@dataclass(frozen=True)
class SummaryRow:
    """One row of the gate's summary table."""

    suite: str
    expectations: int
    passed: int
    failed: int
    success: bool


@dataclass(frozen=True)
class GateResult:
    """All suites of one gate run, and where their Data Docs are.

    Attributes:
        suites: One result per suite run, in run order.
        docs_index: ``index.html`` of the Data Docs site, or None when docs were not built.
        offline: What the offline rewrite did, or None when docs were not built.
    """

    suites: tuple[SuiteResult, ...]
    docs_index: Path | None = None
    offline: OfflineReport | None = None

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    @property
    def failed_suites(self) -> list[str]:
        return [s.name for s in self.suites if not s.success]

    @property
    def failures(self) -> list[str]:
        return [line for s in self.suites for line in s.failures]

    def suite(self, name: str) -> SuiteResult:
        """Return the result of suite ``name``.

        Raises:
            KeyError: that suite did not run.
        """
        for s in self.suites:
            if s.name == name:
                return s
        raise KeyError(name)

    def rows(self) -> list[SummaryRow]:
        """Return the summary table's rows: suite, expectations, passed, failed, success."""
        return [
            SummaryRow(s.name, s.statistics["evaluated"], s.statistics["passed"], s.statistics["failed"], s.success)
            for s in self.suites
        ]

    def summary_table(self) -> str:
        """Return the summary as a fixed-width text table (what ``rluf validate data`` prints)."""
        header = ("suite", "expectations", "passed", "failed", "success")
        body = [(r.suite, str(r.expectations), str(r.passed), str(r.failed), "yes" if r.success else "NO")
                for r in self.rows()]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            first = cells[0].ljust(widths[0])
            pairs = enumerate(zip(cells[1:], widths[1:], strict=True))
            rest = [c.rjust(w) if i < 3 else c.ljust(w) for i, (c, w) in pairs]
            return "  ".join([first, *rest]).rstrip()

        return "\n".join([line(header), *(line(b) for b in body)])

    def report(self) -> str:
        """Return the summary table, one line per failed expectation, and the Data Docs path."""
        parts = [self.summary_table()]
        if self.failures:
            parts.append("failed expectations:")
            parts.extend(f"  {f}" for f in self.failures)
        if self.docs_index is not None:
            parts.append(f"data docs: {self.docs_index}")
        verdict = "passed" if self.success else f"FAILED ({', '.join(self.failed_suites)})"
        parts.append(f"data quality: {verdict}")
        return "\n".join(parts)


def require_passing(result: GateResult | SuiteResult, *, action: str = "train") -> None:
    """Raise unless every suite of ``result`` passed; the retrain gate calls this before training.

    Raises:
        DataQualityError: naming the failed suites, the first failure and the Data Docs.
    """
    suites = result.suites if isinstance(result, GateResult) else (result,)
    failed = [s for s in suites if not s.success]
    if not failed:
        return
    lines = [line for s in failed for line in s.failures]
    first = lines[0] if lines else "no expectation result"
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    docs = result.docs_index if isinstance(result, GateResult) else None
    where = f"; see {docs}" if docs is not None else "; run `rluf validate data` for the report"
    raise DataQualityError(
        f"refusing to {action}: data-quality suite {', '.join(s.name for s in failed)} failed: {first}{more}{where}"
    )


# --------------------------------------------------------------------------- result formatting


def _short(value: Any, limit: int = 40) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounds(kwargs: Mapping[str, Any]) -> str:
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if lo is not None and hi is not None:
        return f"expected [{lo}, {hi}]"
    if hi is not None:
        return f"expected <= {hi}"
    if lo is not None:
        return f"expected >= {lo}"
    return ""


def _detail(kwargs: Mapping[str, Any], result: Mapping[str, Any], exception: Mapping[str, Any] | None) -> str:
    if exception:
        return f"error: {str(exception.get('exception_message') or 'could not be evaluated').splitlines()[0]}"
    if "unexpected_count" in result:
        count, total = result.get("unexpected_count", 0), result.get("element_count", 0)
        text = f"{count} of {total} rows unexpected"
        mostly = kwargs.get("mostly")
        if mostly is not None and mostly < 1:
            text += f" (at most {1 - float(mostly):.1%} allowed)"
        examples = [_short(e) for e in result.get("partial_unexpected_list") or []]
        index = result.get("partial_unexpected_index_list") or []
        id_names = result.get("unexpected_index_column_names") or []
        column = kwargs.get("column")
        if id_names and index and all(isinstance(v, Mapping) for v in index) and id_names[0] != column:
            # Name the failing rows by their id: "user_id 'u-7': 0.6".
            key = id_names[0]
            examples = [f"{key} {_short(v.get(key))}: {e}" for v, e in zip(index, examples, strict=False)]
        if examples:
            text += ", e.g. " + ", ".join(list(dict.fromkeys(examples))[:3])
        bounds = _bounds(kwargs)
        return f"{text}; {bounds}" if bounds else text
    details = result.get("details") or {}
    mismatched = details.get("mismatched") if isinstance(details, Mapping) else None
    if isinstance(mismatched, Mapping) and mismatched.get("missing"):
        return f"missing columns {sorted(mismatched['missing'])}"
    if result.get("partial_missing_list"):
        return f"missing values {result['partial_missing_list']}"
    observed = result.get("observed_value")
    bounds = _bounds(kwargs)
    if "type_list" in kwargs:
        return f"observed type {observed}, expected one of {kwargs['type_list']}"
    return f"observed {_short(observed)}" + (f", {bounds}" if bounds else "")


def _exception(info: Any) -> Mapping[str, Any] | None:
    """GX nests exception info per metric; return the first raised one, if any."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return info
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return value
    return None


# --------------------------------------------------------------------------- the validator


class GeValidator:
    """Runs suites in an ephemeral GX context and builds the Data Docs site under ``reports_dir``.

    Args:
        reports_dir: Report folder (``ValidationSettings.reports_dir``); the site goes to
            ``<reports_dir>/data_docs`` (made absolute: GX resolves a relative base directory
            against its own temporary project root).
        result_format: GX result detail. SUMMARY names example failing values; BOOLEAN_ONLY is
            ~1.8x faster on large failing frames but reports only pass/fail.
        run_name: Groups this run's validation pages in the Data Docs.
        run_time: Time stamp of the run in the Data Docs (default: now).
    """

    def __init__(
        self,
        reports_dir: Path,
        *,
        result_format: Literal["SUMMARY", "BOOLEAN_ONLY"] = "SUMMARY",
        run_name: str = "rluf-data-gate",
        run_time: datetime | None = None,
    ) -> None:
        self.reports_dir = Path(reports_dir).resolve()
        self.docs_dir = self.reports_dir / DOCS_DIRNAME
        self.result_format = result_format
        self._run_id = RunIdentifier(run_name=run_name, run_time=run_time or datetime.now(UTC))
        self._context: Any = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._context.add_data_docs_site(
            site_name=_SITE_NAME,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(self.docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self._datasource = self._context.data_sources.add_pandas(_DATASOURCE)
        self.offline: OfflineReport | None = None
        """What the offline rewrite of the last ``build_docs`` did."""

    def validate(self, name: str, frame: pd.DataFrame, suite: Suite) -> SuiteResult:
        """Run every check of ``suite`` on ``frame`` (and the frames its checks derive from it).

        Args:
            name: Name to report and to file the Data Docs pages under (usually ``suite.name``).
            frame: The suite's input rows.
            suite: From ``validation.expectations``.

        Raises:
            DataQualityError: GX itself failed (not an expectation: those are results).
        """
        failed: list[FailedExpectation] = []
        evaluated = passed = 0
        for check in suite.checks:
            gx_name = f"{name}-{check.name}".replace(".", "_")
            derived = check.build(frame)
            try:
                result = self._run(gx_name, derived, check.expectations, check.id_column)
            except GreatExpectationsError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DataQualityError(f"great expectations could not run {gx_name}: {first}") from exc
            for r in result.results:
                evaluated += 1
                if r.success:
                    passed += 1
                    continue
                config = r.expectation_config
                kwargs = dict(config.kwargs)
                failed.append(FailedExpectation(
                    suite=name, check=check.name, expectation=str(config.type), column=kwargs.get("column"),
                    detail=_detail(kwargs, dict(r.result or {}), _exception(r.exception_info)),
                ))
        outcome = SuiteResult(
            name=name, success=not failed,
            statistics={"evaluated": evaluated, "passed": passed, "failed": evaluated - passed, "rows": len(frame)},
            failed=tuple(failed),
        )
        logger.info("suite %s: %d/%d expectations passed over %d rows", name, passed, evaluated, len(frame))
        for f in failed:
            logger.info("data quality: %s", f)
        return outcome

    def _run(self, gx_name: str, frame: pd.DataFrame, expectations: Sequence[Any], id_column: str | None) -> Any:
        ctx = self._context
        for store, kind in ((ctx.validation_definitions, "validation definition"), (ctx.suites, "suite")):
            try:
                store.delete(gx_name)
            except DataContextError:  # not there: the first run of this name
                logger.debug("no earlier %s %s to replace", kind, gx_name)
        try:
            asset = self._datasource.get_asset(gx_name)
        except LookupError:
            asset = self._datasource.add_dataframe_asset(gx_name)
        try:
            batch = asset.get_batch_definition("whole")
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe("whole")
        gx_suite = ctx.suites.add(gx.ExpectationSuite(
            name=gx_name, expectations=[e.copy(update={"id": None}, deep=True) for e in expectations],
        ))
        definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=gx_name, data=batch, suite=gx_suite))
        frame = nested_as_length(frame)  # a check's own build may have kept a list column
        fmt: Any = self.result_format
        if fmt == "SUMMARY" and id_column and id_column in frame.columns:
            fmt = {"result_format": "SUMMARY", "unexpected_index_column_names": [id_column]}
        return definition.run(batch_parameters={"dataframe": frame}, result_format=fmt, run_id=self._run_id)

    def build_docs(self) -> Path:
        """Build the Data Docs of this validator's runs, make them render offline, return ``index.html``.

        The site is rebuilt from scratch: the ephemeral stores hold only this run, and pages of
        older runs would otherwise sit on disk with no index linking them.
        """
        self.docs_dir.mkdir(parents=True, exist_ok=True)
        for name in _GENERATED:
            old = self.docs_dir / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
        self._context.build_data_docs(site_names=[_SITE_NAME])
        self.offline = make_offline(self.docs_dir)
        return self.docs_dir / "index.html"


# --------------------------------------------------------------------------- the lake gate


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
