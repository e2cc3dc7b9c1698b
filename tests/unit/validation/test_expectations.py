"""The suites on small pandas frames: derived frames by hand, and GX verdicts on clean and bad batches."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rluf.errors import DataQualityError
from rluf.settings import ValidationSettings
from validation.expectations import (
    conversation_splits_frame,
    daily_love_rate_frame,
    freshness_frame,
    quarantine_rate_frame,
    quarantine_suite,
    raw_events_suite,
    training_set_suite,
    triples_suite,
    user_label_share_frame,
)
from validation.gate_results import SuiteResult, require_passing
from validation.ge_validator import GeValidator

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=10)


def triples(days: int = 8, per_day: int = 100, rate: float = 0.1, newest_rate: float | None = None,
            users: int = 20) -> pd.DataFrame:
    rows = []
    n = 0
    for day in range(days):
        r = newest_rate if newest_rate is not None and day == days - 1 else rate
        for i in range(per_day):
            ts = T0 + timedelta(days=day, minutes=i)
            rows.append({
                "response_id": f"r{n}", "conversation_id": f"c{n}", "user_id": f"u{n % users}",
                "context": [{"role": "user", "content": "q"}], "response": "an answer " * (1 + n % 3),
                "label": int(i < round(per_day * r)), "weight": 1.0, "ts": ts,
                "window_closed_at": ts + timedelta(hours=1), "date": (ts + timedelta(hours=1)).strftime("%Y-%m-%d"),
            })
            n += 1
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("int32")
    for col in ("ts", "window_closed_at"):
        frame[col] = frame[col].astype("datetime64[us, UTC]")
    return frame


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> GeValidator:
    return GeValidator(tmp_path_factory.mktemp("reports"))


def failed(result: SuiteResult) -> set[tuple[str, str, str | None]]:
    return result.failed_expectations()


# ------------------------------------------------------------------ derived frames (no GX)


def test_daily_love_rate_compares_newest_day_to_trailing_days() -> None:
    frame = daily_love_rate_frame(triples(newest_rate=0.5), ValidationSettings(love_rate_trailing_days=7))
    row = frame.iloc[0]
    assert (row["day"], row["rows"], row["loves"]) == ("2026-11-08", 100, 50)
    assert row["trailing_days"] == 7 and row["trailing_rows"] == 700 and row["trailing_rate"] == pytest.approx(0.1)
    assert row["love_rate_jump"] == pytest.approx(5.0)


def test_daily_love_rate_is_not_judged_on_small_days_or_without_history() -> None:
    small = daily_love_rate_frame(triples(per_day=20, newest_rate=0.5), ValidationSettings())  # 2 expected, 10 seen
    assert math.isnan(small.iloc[0]["love_rate_jump"])
    many = daily_love_rate_frame(triples(per_day=40, newest_rate=0.5), ValidationSettings())  # 4 expected, 20 >= 3 x 5
    assert many.iloc[0]["love_rate_jump"] == pytest.approx(5.0)
    alone = daily_love_rate_frame(triples(days=1), ValidationSettings())
    assert alone.iloc[0]["trailing_days"] == 0 and math.isnan(alone.iloc[0]["love_rate_jump"])
    assert daily_love_rate_frame(triples().iloc[:0]).empty


def test_daily_love_rate_catches_a_jump_from_zero() -> None:
    frame = daily_love_rate_frame(triples(rate=0.0, newest_rate=0.3), ValidationSettings())
    # No Love in 700 trailing rows counts as one: 30 / (1/700 * 100) = 210x.
    assert frame.iloc[0]["love_rate_jump"] == pytest.approx(0.3 / (1 / 700))


def test_user_label_share() -> None:
    frame = triples(days=1, per_day=100, rate=0.3, users=3)
    shares = user_label_share_frame(frame, ValidationSettings(user_share_min_labels=20)).set_index("user_id")
    assert shares["loves"].sum() == 30 and shares.loc["u0", "share"] == pytest.approx(10 / 30)
    few = user_label_share_frame(frame, ValidationSettings(user_share_min_labels=31))
    assert few["share"].isna().all() and (few["total_loves"] == 30).all()


def test_freshness_and_quarantine_rate_frames() -> None:
    fresh = freshness_frame(triples(days=2), NOW)
    newest = T0 + timedelta(days=1, minutes=99, hours=1)
    assert fresh.iloc[0]["age_days"] == pytest.approx((NOW - newest).total_seconds() / 86_400)
    assert math.isnan(freshness_frame(triples().iloc[:0], NOW).iloc[0]["age_days"])
    assert quarantine_rate_frame(25, 75).iloc[0]["quarantine_rate"] == 0.25
    assert quarantine_rate_frame(0, 0).iloc[0]["quarantine_rate"] == 0.0


def test_conversation_splits_frame_lists_each_pair_once() -> None:
    frame = pd.DataFrame({"conversation_id": ["a", "a", "b", "b", None],
                          "split": ["train", "train", "train", "test", "x"]})
    pairs = conversation_splits_frame(frame)
    assert sorted(map(tuple, pairs.to_numpy().tolist())) == [("a", "train"), ("b", "test"), ("b", "train")]


# ------------------------------------------------------------------ GX verdicts


def test_clean_triples_pass(validator: GeValidator) -> None:
    suite = triples_suite(ValidationSettings(), now=NOW)
    result = validator.validate("triples", triples(), suite)
    assert result.success, result.failures
    assert result.statistics["evaluated"] == result.statistics["passed"] == suite.expectation_count == 25


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda f: f.assign(response_id=["r1"] * 2 + list(f["response_id"][2:])),
         ("rows", "expect_column_values_to_be_unique", "response_id")),
        (lambda f: f.assign(context=[None, *f["context"][1:]]),
         ("rows", "expect_column_values_to_not_be_null", "context")),
        (lambda f: f.assign(context=[[], *f["context"][1:]]),
         ("rows", "expect_column_values_to_be_between", "context")),
        (lambda f: f.assign(label=np.where(f.index == 3, 2, f["label"]).astype("int32")),
         ("rows", "expect_column_values_to_be_in_set", "label")),
        (lambda f: f.assign(weight=np.where(f.index == 3, 1.5, f["weight"])),
         ("rows", "expect_column_values_to_be_between", "weight")),
        (lambda f: f.assign(user_id=[None, *f["user_id"][1:]]),
         ("rows", "expect_column_values_to_not_be_null", "user_id")),
        (lambda f: f.assign(response=[""] * 20 + list(f["response"][20:])),
         ("rows", "expect_column_value_lengths_to_be_between", "response")),
        (lambda f: f.drop(columns=["conversation_id"]),
         ("rows", "expect_table_columns_to_match_set", None)),
        (lambda f: f.assign(label=f["label"].astype("float64")),
         ("rows", "expect_column_values_to_be_in_type_list", "label")),
    ],
    ids=["duplicate-id", "null-context", "empty-context", "label-2", "weight-1.5", "null-user", "empty-responses",
         "missing-column", "float-label"],
)
def test_bad_triples_fail_by_name(validator: GeValidator, mutate, expected) -> None:
    result = validator.validate("triples", mutate(triples()), triples_suite(None, now=NOW))
    assert not result.success
    assert expected in failed(result), result.failures


def test_love_rate_spike_fails_only_the_jump(validator: GeValidator) -> None:
    result = validator.validate("triples", triples(newest_rate=0.45), triples_suite(None, now=NOW))
    assert failed(result) == {("daily_love_rate", "expect_column_values_to_be_between", "love_rate_jump")}
    assert "love_rate_jump" in result.failures[0] and "expected <= 3.0" in result.failures[0]


def test_love_rate_out_of_bounds_and_user_share(validator: GeValidator) -> None:
    lovers = triples(rate=0.7, users=2)
    result = validator.validate("triples", lovers, triples_suite(None, now=NOW))
    assert failed(result) == {
        ("rows", "expect_column_mean_to_be_between", "label"),
        ("user_label_share", "expect_column_values_to_be_between", "share"),
    }


def test_stale_triples_fail_freshness(validator: GeValidator) -> None:
    result = validator.validate("triples", triples(), triples_suite(ValidationSettings(freshness_days=1.0), now=NOW))
    assert failed(result) == {("freshness", "expect_column_max_to_be_between", "age_days")}


def test_quarantine_suite(validator: GeValidator) -> None:
    quarantine = pd.DataFrame({
        "quarantine_id": [f"q{i}" for i in range(30)], "reason": ["not_owner"] * 30,
        "quarantined_at": pd.Series([T0] * 30).astype("datetime64[us, UTC]"),
    })
    assert validator.validate("quarantine", quarantine, quarantine_suite(None, accepted_events=1000)).success
    breach = validator.validate("quarantine", quarantine, quarantine_suite(None, accepted_events=100))
    assert failed(breach) == {("rate", "expect_column_max_to_be_between", "quarantine_rate")}
    bad = quarantine.assign(reason=["bogus"] + ["not_owner"] * 29)
    assert ("rows", "expect_column_values_to_be_in_set", "reason") in failed(
        validator.validate("quarantine", bad, quarantine_suite(None, accepted_events=1000)))
    empty = quarantine.iloc[:0]
    assert validator.validate("quarantine", empty, quarantine_suite(None, accepted_events=0)).success


def raw_events(n: int = 200) -> pd.DataFrame:
    rows = []
    for i in range(n):
        if i % 2:
            rows.append({"type": "reaction", "event_id": f"e{i}", "response_id": f"r{i - 1}", "user_id": "u1",
                         "reaction": "love", "action": "add", "ts": "2026-11-01T12:00:00Z"})
        else:
            rows.append({"type": "response", "event_id": f"e{i}", "response_id": f"r{i}", "conversation_id": "c",
                         "user_id": "u1", "context": [{"role": "user", "content": "q"}], "response": "a",
                         "ts": "2026-11-01T12:00:00+00:00"})
    return pd.DataFrame(rows)


def test_raw_events_tolerate_a_few_bad_rows_but_not_a_burst(validator: GeValidator) -> None:
    events = raw_events()
    events.loc[0, "event_id"] = "e2"  # one producer retry: 2 of 200 rows
    assert validator.validate("raw_events", events, raw_events_suite(None)).success
    burst = raw_events()
    burst.loc[range(1, 21, 2), "reaction"] = "heart"  # 10 unknown reactions: 5%
    burst.loc[range(1, 41, 2), "ts"] = "2026-11-01T12:00:00"  # 20 timestamps without a zone
    burst.loc[range(0, 20, 2), "conversation_id"] = None
    result = validator.validate("raw_events", burst, raw_events_suite(None))
    assert failed(result) == {
        ("rows", "expect_column_values_to_be_in_set", "reaction"),
        ("rows", "expect_column_values_to_match_regex", "ts"),
        ("rows", "expect_column_values_to_not_be_null", "conversation_id"),
    }


def training(n: int = 40) -> pd.DataFrame:
    splits = ["train"] * 6 + ["validation", "test"]
    return pd.DataFrame({
        "conversation_id": [f"c{i // 2}" for i in range(n)],  # two rows per conversation, same split
        "context": ["user: q"] * n, "response": ["a"] * n, "label": [i % 2 for i in range(n)],
        "weight": [1.0] * n, "split": [splits[(i // 2) % len(splits)] for i in range(n)],
    })


def test_training_set_suite(validator: GeValidator) -> None:
    assert validator.validate("training_set", training(), training_set_suite(None)).success
    leak = training()
    leak.loc[0, "split"] = "test"  # conversation c0 now in train and test
    assert failed(validator.validate("training_set", leak, training_set_suite(None))) == {
        ("conversation_splits", "expect_column_values_to_be_unique", "conversation_id")
    }
    no_validation = training().replace({"split": {"validation": "train"}})
    assert failed(validator.validate("training_set", no_validation, training_set_suite(None))) == {
        ("rows", "expect_column_distinct_values_to_contain_set", "split")
    }
    unweighted = training().assign(weight=[None] + [1.0] * 39, label=[3] + [0] * 39)
    got = failed(validator.validate("training_set", unweighted, training_set_suite(None)))
    assert got == {("rows", "expect_column_values_to_not_be_null", "weight"),
                   ("rows", "expect_column_values_to_be_in_set", "label")}
    missing = training().drop(columns=["split"])
    got = failed(validator.validate("training_set", missing, training_set_suite(None)))
    assert ("rows", "expect_table_columns_to_match_set", None) in got


def test_require_passing_raises_naming_the_suite(validator: GeValidator) -> None:
    bad = validator.validate("training_set", training().assign(label=2), training_set_suite(None))
    with pytest.raises(DataQualityError, match=r"^refusing to train: data-quality suite training_set failed: "
                                               r"training_set/rows: expect_column_values_to_be_in_set\(label\)"):
        require_passing(bad)


def test_build_docs_replaces_the_previous_site(validator: GeValidator, tmp_path: Path) -> None:
    v = GeValidator(tmp_path)
    (tmp_path / "data_docs/validations/old").mkdir(parents=True)
    v.validate("training_set", training(), training_set_suite(None))
    index = v.build_docs()
    assert index == tmp_path.resolve() / "data_docs/index.html" and index.is_file()
    assert not (tmp_path / "data_docs/validations/old").exists()
    assert v.offline is not None and v.offline.problems == ()


def test_user_label_share_counts_down_weighted_loves_at_their_weight() -> None:
    frame = pd.DataFrame({
        "user_id": ["lover"] * 10 + [f"u{i}" for i in range(10)],
        "label": [1] * 20,
        "weight": [0.1] * 10 + [1.0] * 10,
    })
    shares = user_label_share_frame(frame, ValidationSettings(user_share_min_labels=20)).set_index("user_id")
    assert shares.loc["lover", "loves"] == 10
    assert shares.loc["lover", "share"] == pytest.approx(1.0 / 11.0)  # 10 x 0.1 of 11 weighted Loves
    assert shares.loc["u0", "share"] == pytest.approx(1.0 / 11.0)
