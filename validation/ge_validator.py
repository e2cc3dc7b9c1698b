"""Run the data-quality suites with Great Expectations and write offline Data Docs.

``GeValidator`` runs the suites of ``validation.expectations`` on frames and turns GX's
results into ``validation.gate_results``; ``validation.lake_gate.validate_lake`` feeds it the
lake.

GX runs in an *ephemeral* context: nothing is written to a ``gx/`` project folder, the only
output is the Data Docs site under ``<reports_dir>/data_docs``, rebuilt on every run so that
it shows exactly the last gate (the ephemeral stores hold only this run). Results are kept in
GX's SUMMARY format: COMPLETE costs ~1.5x on a large failing batch and adds nothing a
one-line report needs.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.exceptions import DataContextError, GreatExpectationsError

from rluf.errors import DataQualityError
from validation.docs_offline import OfflineReport, make_offline
from validation.expectations import Suite, nested_as_length
from validation.gate_results import FailedExpectation, SuiteResult

__all__ = ["DOCS_DIRNAME", "GeValidator"]

logger = logging.getLogger(__name__)

DOCS_DIRNAME: Final = "data_docs"
"""Folder under ``reports_dir`` that holds the Data Docs site."""

_SITE_NAME: Final = "rluf_data_docs"
_DATASOURCE: Final = "rluf"
_GENERATED: Final = ("index.html", "expectations", "validations", "static")


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
