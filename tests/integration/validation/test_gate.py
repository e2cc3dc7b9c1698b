"""The data-quality gate on real Delta tables: a clean lake passes, injected bad batches fail by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.lake.schema import triples_to_arrow
from rluf.errors import DataQualityError, TableMissingError
from rluf.settings import ValidationSettings
from validation.gate_results import GateResult, require_passing
from validation.lake_gate import validate_lake

from .conftest import (
    NOW,
    START,
    append_raw,
    land,
    make_triples,
    quarantined,
    training_frame,
    with_null_contexts,
)

pytestmark = pytest.mark.integration


def gate(root: str, settings: ValidationSettings, reports: Path, **kwargs) -> GateResult:
    return validate_lake(root, settings, now=NOW, reports_dir=reports, **kwargs)


def failed(result: GateResult, suite: str) -> set[tuple[str, str, str | None]]:
    return result.suite(suite).failed_expectations()


def test_clean_lake_passes_every_suite(lake: str, settings: ValidationSettings, tmp_path: Path) -> None:
    training = tmp_path / "train.parquet"
    training_frame(make_triples()).to_parquet(training)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({
        "type": "response", "event_id": f"e{i}", "response_id": f"r{i}", "conversation_id": f"c{i}",
        "user_id": "u1", "context": [{"role": "user", "content": "q"}], "response": "a", "policy_version": "p",
        "ts": "2026-11-01T12:00:00+00:00"}) for i in range(50)) + "\n")

    result = validate_lake(lake, settings, now=NOW, training_set=training, raw_events=events)

    assert result.success, result.report()
    assert [r.suite for r in result.rows()] == ["raw_events", "triples", "quarantine", "training_set"]
    assert all(r.failed == 0 and r.expectations == r.passed > 0 for r in result.rows())
    assert result.suite("triples").statistics["rows"] == 8 * 150
    assert result.docs_index == Path(settings.reports_dir).resolve() / "data_docs" / "index.html"
    assert result.docs_index.is_file()
    assert result.offline is not None and result.offline.problems == ()
    table = result.summary_table()
    assert table.splitlines()[0].split() == ["suite", "expectations", "passed", "failed", "success"]
    require_passing(result)  # does not raise


def test_duplicated_response_ids_fail(lake: str, settings: ValidationSettings, tmp_path: Path) -> None:
    # A backfill run twice: the same responses appended again past the sink's dedupe.
    append_raw(lake, triples_to_arrow(make_triples()[:5]))
    result = gate(lake, settings, tmp_path / "r")
    assert not result.success
    assert ("rows", "expect_column_values_to_be_unique", "response_id") in failed(result, "triples")
    assert result.suite("quarantine").success
    assert any("10 of 1205 rows unexpected" in f for f in result.suite("triples").failures)


def test_love_rate_spike_on_the_newest_day_fails(settings: ValidationSettings, tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    land(root, make_triples(newest_rate=0.4))  # 6% for a week, then 40%
    result = gate(root, settings, tmp_path / "r")
    assert failed(result, "triples") == {("daily_love_rate", "expect_column_values_to_be_between", "love_rate_jump")}
    # The overall rate stays inside its bounds: only the jump alarm catches it.
    assert ("rows", "expect_column_mean_to_be_between", "label") not in failed(result, "triples")


def test_null_and_empty_contexts_fail(lake: str, settings: ValidationSettings, tmp_path: Path) -> None:
    extra = make_triples(days=1, per_day=6, prefix="x")
    append_raw(lake, with_null_contexts(extra, [0, 1]))
    empty = [t.model_copy(update={"context": []}) for t in make_triples(days=1, per_day=2, prefix="y")]
    land(lake, empty)
    result = gate(lake, settings, tmp_path / "r")
    got = failed(result, "triples")
    assert ("rows", "expect_column_values_to_not_be_null", "context") in got
    assert ("rows", "expect_column_values_to_be_between", "context") in got
    lines = result.suite("triples").failures
    assert "2 of 1208 rows unexpected" in next(f for f in lines if "not_be_null(context)" in f)  # null
    assert "2 of 1208 rows unexpected" in next(f for f in lines if "be_between(context)" in f)  # empty


def test_user_holding_too_large_a_share_of_labels_fails(settings: ValidationSettings, tmp_path: Path) -> None:
    triples = make_triples()
    # Move most Loves to one user; the rate, days and everything else stay the same.
    loved = [i for i, t in enumerate(triples) if t.label == 1]
    for i in loved[: len(loved) // 2]:
        triples[i] = triples[i].model_copy(update={"user_id": "u-whale"})
    root = str(tmp_path / "lake")
    land(root, triples)
    result = gate(root, settings, tmp_path / "r")
    assert failed(result, "triples") == {("user_label_share", "expect_column_values_to_be_between", "share")}
    assert "user_id 'u-whale'" in result.suite("triples").failures[0]


def test_quarantine_rate_breach_fails(settings: ValidationSettings, tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    land(root, make_triples(), quarantined(600))  # ~1,270 accepted events, 600 refused: 32%
    result = gate(root, settings, tmp_path / "r")
    assert result.suite("triples").success
    assert failed(result, "quarantine") == {("rate", "expect_column_max_to_be_between", "quarantine_rate")}
    with pytest.raises(DataQualityError, match=r"suite quarantine failed: quarantine/rate"):
        require_passing(result)


def test_training_set_with_a_conversation_in_two_splits_fails(
    lake: str, settings: ValidationSettings, tmp_path: Path
) -> None:
    frame = training_frame(make_triples())
    frame.loc[1, "conversation_id"] = frame.loc[8, "conversation_id"]  # train row joins a validation conversation
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    result = gate(lake, settings, tmp_path / "r", training_set=path, build_docs=False)
    assert result.docs_index is None
    assert failed(result, "training_set") == {
        ("conversation_splits", "expect_column_values_to_be_unique", "conversation_id")
    }
    assert [s for s in result.failed_suites] == ["training_set"]


def test_raw_events_burst_of_duplicates_fails(lake: str, settings: ValidationSettings, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [json.dumps({"type": "reaction", "event_id": f"e{i % 80}", "response_id": f"r{i}", "user_id": "u1",
                         "reaction": "love", "ts": f"2026-11-01T12:00:{i % 60:02d}Z"}) for i in range(100)]
    events.write_text("\n".join([*lines, "not json"]) + "\n")
    result = gate(lake, settings, tmp_path / "r", raw_events=events, build_docs=False)
    got = failed(result, "raw_events")
    assert ("rows", "expect_column_values_to_be_unique", "event_id") in got
    assert result.suite("triples").success


def test_require_passing_names_the_failed_suite(settings: ValidationSettings, tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    land(root, make_triples(newest_rate=0.4))
    result = gate(root, settings, tmp_path / "r")
    with pytest.raises(DataQualityError) as info:
        require_passing(result, action="retrain")
    message = str(info.value)
    assert message.startswith("refusing to retrain: data-quality suite triples failed: triples/daily_love_rate")
    assert "\n" not in message and str(result.docs_index) in message


def test_thresholds_come_from_settings(lake: str, tmp_path: Path) -> None:
    strict = ValidationSettings(love_rate_max=0.01)
    result = gate(lake, strict, tmp_path / "r", build_docs=False)
    assert failed(result, "triples") == {("rows", "expect_column_mean_to_be_between", "label")}


def test_missing_triples_table_is_a_lake_error(settings: ValidationSettings, tmp_path: Path) -> None:
    with pytest.raises(TableMissingError):
        gate(str(tmp_path / "empty"), settings, tmp_path / "r")


def test_freshness_is_judged_at_the_clock_passed_in(lake: str, tmp_path: Path) -> None:
    stale = ValidationSettings(freshness_days=3.0)
    later = NOW.replace(month=12)
    ok = validate_lake(lake, stale, now=NOW, reports_dir=tmp_path / "a", build_docs=False)
    late = validate_lake(lake, stale, now=later, reports_dir=tmp_path / "b", build_docs=False)
    assert ok.success
    assert failed(late, "triples") == {("freshness", "expect_column_max_to_be_between", "age_days")}
    assert START < NOW < later
