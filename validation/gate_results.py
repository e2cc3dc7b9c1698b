"""What a data-quality gate run found: per-suite results, the summary table, and the refusal.

`require_passing` is what retraining calls before it trains: it raises unless every suite
passed, naming the failed suites, the first failure and the Data Docs. These types carry
no Great Expectations objects, so callers that only read a result need not import GX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rluf.errors import DataQualityError
from validation.docs_offline import OfflineReport

__all__ = ["FailedExpectation", "GateResult", "SuiteResult", "SummaryRow", "require_passing"]


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
