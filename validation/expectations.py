"""The data-quality suites, as data: what each gate expects of raw events, triples and training sets.

A suite is a list of checks; a check is a set of Great Expectations expectation objects plus the
function that builds the frame they read. Most expectations read the rows as they are (ids,
nulls, sets, ranges). Some properties are not a property of any one row: the newest day's Love
rate against the trailing days', the share of all Loves held by one user, the age of the newest
triple, the quarantine rate. GX 1.x has no cross-row expectations for pandas, so each of these
gets a small derived frame (one row per day, per user, or a single row) and plain
column expectations on it. That keeps every rule visible, and rendered, in the Data Docs, with
its threshold, instead of hidden in Python.

Thresholds come from ``ValidationSettings`` (``Settings.validation``).

Everything here is pure: no I/O, no GX context. ``validation.ge_validator`` runs the suites.

Why one module of ~490 lines: these are the data-quality rules, read together when a threshold is
reviewed; each derived frame belongs to the one rule that reads it. No I/O and no GX context
live here (``validation.ge_validator`` runs the suites).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.expectations import Expectation

from rluf.schemas import QUARANTINE_REASONS, REACTION_KINDS
from rluf.settings import ValidationSettings

__all__ = [
    "Check",
    "Suite",
    "TRIPLE_COLUMNS",
    "TRAINING_SET_COLUMNS",
    "SPLITS",
    "raw_events_suite",
    "triples_suite",
    "quarantine_suite",
    "training_set_suite",
    "daily_love_rate_frame",
    "user_label_share_frame",
    "freshness_frame",
    "quarantine_rate_frame",
    "conversation_splits_frame",
    "nested_as_length",
]

logger = logging.getLogger(__name__)

TRIPLE_COLUMNS: Final[tuple[str, ...]] = (
    "response_id", "conversation_id", "user_id", "context", "response", "label", "weight", "ts",
    "window_closed_at",
)
"""Columns of the ``triples`` table that the triples suite needs."""

TRAINING_SET_COLUMNS: Final[tuple[str, ...]] = ("conversation_id", "context", "response", "label", "weight", "split")
"""Columns a training-set parquet file must have (the trainer reads the last five)."""

SPLITS: Final[tuple[str, ...]] = ("train", "validation", "test")

_ISO_WITH_ZONE: Final = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|z|[+-]\d{2}:?\d{2})$"
_INT_TYPES: Final = ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64"]
_FLOAT_TYPES: Final = ["float32", "float64", "Float32", "Float64"]
_TS_TYPES: Final = ["datetime64[s]", "datetime64[ms]", "datetime64[us]", "datetime64[ns]"]


def _thresholds(settings: ValidationSettings | None) -> ValidationSettings:
    """The thresholds to compare against: ``Settings.validation``, or its defaults."""
    return settings if settings is not None else ValidationSettings()


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


@dataclass(frozen=True)
class Check:
    """Expectations on one frame: the suite's input, or a frame derived from it.

    Attributes:
        name: Short name; the GX suite is ``<suite>-<check>`` (no dots: GX nests pages by them).
        expectations: GX expectation objects (not yet attached to any suite).
        build: Turns the suite's input frame into the frame the expectations read. Must not fail on
            a frame that lacks columns: the schema expectations of the ``rows`` check report those.
        id_column: Column whose values name the failing rows in a report (e.g. the user ids over
            the label-share cap), or None.
        description: What the check guards against, for logs and docs.
    """

    name: str
    expectations: tuple[Expectation, ...]
    build: Callable[[pd.DataFrame], pd.DataFrame] = _identity
    id_column: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Suite:
    """A named list of checks run on one input frame; fails when any expectation of any check fails."""

    name: str
    checks: tuple[Check, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def expectation_count(self) -> int:
        return sum(len(c.expectations) for c in self.checks)


# --------------------------------------------------------------------------- frame helpers


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _utc_naive(series: pd.Series) -> pd.Series:
    """Timestamps as naive UTC ``datetime64``: GX's pandas type check cannot match tz-aware dtypes."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _length(value: Any) -> int | None:
    """Length of a list/array/string value; None for a null (so null and empty stay distinct)."""
    if _is_null(value):
        return None
    try:
        return len(value)
    except TypeError:
        return None


def nested_as_length(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace columns of lists, arrays or dicts by their lengths (nullable ``Int64``; null stays null).

    GX hashes every batch it is handed; a frame with unhashable cells (the ``context`` lists)
    makes it fall back to pickling the whole frame, ~6 s for 200k triples. Every rule on
    such a column is about null versus empty, which the length keeps.
    """
    out = frame
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        first = next((v for v in column if not _is_null(v)), None)
        if isinstance(first, list | tuple | dict | np.ndarray):
            if out is frame:
                out = frame.copy()
            out[name] = pd.array([_length(v) for v in column], dtype="Int64")
    return out


def _day(frame: pd.DataFrame) -> pd.Series:
    """The UTC day of each triple: the ``date`` partition if read, else derived from ``window_closed_at``."""
    if "date" in frame.columns:
        return frame["date"].astype("string")
    closed = pd.to_datetime(_column(frame, "window_closed_at"), utc=True, errors="coerce")
    return closed.dt.strftime("%Y-%m-%d").astype("string")


def _labels(frame: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(_column(frame, "label"), errors="coerce")


# --------------------------------------------------------------------------- derived frames


def _triple_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The triples as GX reads them: UTC-naive timestamps, ``context`` as its number of turns."""
    out = frame.drop(columns=[c for c in ("reaction_sources", "reactions") if c in frame.columns])
    for name in ("ts", "window_closed_at"):
        if name in out.columns:
            out[name] = _utc_naive(out[name])
    if "context" in out.columns:
        out["context"] = pd.array([_length(v) for v in out["context"]], dtype="Int64")
    out["response_chars"] = [len(v) if isinstance(v, str) else np.nan for v in _column(frame, "response")]
    return nested_as_length(out)


def daily_love_rate_frame(frame: pd.DataFrame, thresholds: ValidationSettings | None = None) -> pd.DataFrame:
    """Return one row for the newest day: its Love rate, the trailing days' rate and their ratio.

    The ratio (``love_rate_jump``) is NaN, i.e. not judged, when there are no trailing days, or
    when the newest day is small: it would hold fewer than ``love_rate_jump_min_expected``
    Loves at the trailing rate and holds fewer than ``love_rate_jump_factor`` times that many.
    At a 1% base rate a 100-row day with 3 Loves is noise, not an attack; at 5 expected Loves,
    reaching 3x (15) by chance has a Poisson probability of ~2e-4. A trailing rate of zero
    counts as one Love over the trailing rows, so a jump from nothing to many is still caught.
    """
    t = _thresholds(thresholds)
    columns = ["day", "rows", "loves", "love_rate", "trailing_days", "trailing_rows", "trailing_loves",
               "trailing_rate", "expected_loves", "love_rate_jump"]
    labels = _labels(frame)
    days = _day(frame)
    valid = days.notna() & labels.notna()
    if not valid.any():
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns}).astype({"day": "string"})
    per_day = (
        pd.DataFrame({"day": days[valid], "label": labels[valid]})
        .groupby("day", sort=True)["label"].agg(rows="size", loves="sum")
    )
    newest = str(per_day.index[-1])
    newest_day = pd.Timestamp(newest)
    start = (newest_day - pd.Timedelta(days=t.love_rate_trailing_days)).strftime("%Y-%m-%d")
    trailing = per_day[(per_day.index >= start) & (per_day.index < newest)]
    rows, loves = int(per_day["rows"].iloc[-1]), float(per_day["loves"].iloc[-1])
    t_rows, t_loves = int(trailing["rows"].sum()), float(trailing["loves"].sum())
    rate = loves / rows if rows else math.nan
    t_rate = t_loves / t_rows if t_rows else math.nan
    baseline = max(t_loves, 1.0) / t_rows if t_rows else math.nan
    expected = rows * baseline if t_rows else math.nan
    enough = t.love_rate_jump_min_expected
    judged = t_rows > 0 and (expected >= enough or loves >= t.love_rate_jump_factor * enough)
    jump = rate / baseline if judged else math.nan
    return pd.DataFrame(
        [{
            "day": newest, "rows": rows, "loves": loves, "love_rate": rate, "trailing_days": len(trailing),
            "trailing_rows": t_rows, "trailing_loves": t_loves, "trailing_rate": t_rate,
            "expected_loves": expected, "love_rate_jump": jump,
        }],
        columns=columns,
    )


def user_label_share_frame(frame: pd.DataFrame, thresholds: ValidationSettings | None = None) -> pd.DataFrame:
    """Return one row per user with a positive label: their Loves and share of all Loves.

    The share is of the *weighted* positives (``weight`` column when present): a user the
    stream already down-weighted as low-information does not steer the model, so does not
    count at full weight. ``share`` is NaN (not judged) while the lake holds fewer than
    ``user_share_min_labels`` positives in total: with five Loves, one user holding two is
    not a takeover.
    """
    t = _thresholds(thresholds)
    users = _column(frame, "user_id")
    positive = _labels(frame).eq(1) & users.notna()
    weights = (pd.to_numeric(frame["weight"], errors="coerce").fillna(1.0) if "weight" in frame.columns
               else pd.Series(1.0, index=frame.index))
    loves = users[positive].value_counts()
    weighted = weights[positive].groupby(users[positive]).sum().reindex(loves.index)
    total = int(loves.sum())
    out = pd.DataFrame({"user_id": loves.index.astype(str), "loves": loves.to_numpy(dtype="int64")})
    out["share"] = (weighted.to_numpy() / float(weighted.sum())) if total >= t.user_share_min_labels else np.nan
    out["total_loves"] = total
    return out.reset_index(drop=True)


def freshness_frame(frame: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Return a single row: the newest ``window_closed_at`` and its age in days at ``now``.

    ``now`` is passed in (not read from the clock) so that a gate over a replayed or
    synthetic lake can be judged at the time it describes, and tests are deterministic.
    """
    closed = pd.to_datetime(_column(frame, "window_closed_at"), utc=True, errors="coerce")
    now_ts = pd.Timestamp(now if now.tzinfo else now.replace(tzinfo=UTC)).tz_convert("UTC")
    if closed.notna().any():
        newest = pd.Timestamp(closed.max())
        age = (now_ts - newest).total_seconds() / 86_400.0
        newest_naive: Any = newest.tz_convert("UTC").tz_localize(None)
    else:
        age, newest_naive = math.nan, pd.NaT
    return pd.DataFrame({
        "newest_window_closed_at": pd.Series([newest_naive], dtype="datetime64[us]"),
        "now": pd.Series([now_ts.tz_localize(None)], dtype="datetime64[us]"),
        "age_days": [age],
    })


def quarantine_rate_frame(quarantined: int, accepted: int) -> pd.DataFrame:
    """Return a single row: quarantined and accepted event counts and the quarantine rate.

    Args:
        quarantined: Rows in the quarantine table.
        accepted: Input events that made it into the lake (see
            ``validation.lake_gate.accepted_event_count`` for how they are counted).
    """
    total = quarantined + accepted
    return pd.DataFrame({
        "quarantined": [quarantined], "accepted": [accepted],
        "quarantine_rate": [quarantined / total if total else 0.0],
    })


def conversation_splits_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the distinct (conversation_id, split) pairs: a conversation in two splits appears twice."""
    pairs = pd.DataFrame({"conversation_id": _column(frame, "conversation_id"), "split": _column(frame, "split")})
    pairs = pairs.dropna(subset=["conversation_id"]).drop_duplicates()
    return pairs.astype({"conversation_id": str, "split": object}).reset_index(drop=True)


def _raw_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw events with every contract field present: a field no event carries is null in all rows."""
    out = frame.copy()
    for name in ("type", "event_id", "response_id", "conversation_id", "user_id", "context", "reaction",
                 "action", "ts"):
        if name not in out.columns:
            out[name] = pd.Series([None] * len(out), index=out.index, dtype=object)
    return nested_as_length(out)


# --------------------------------------------------------------------------- suites


def _not_null(columns: Sequence[str], why: str, **kwargs: Any) -> list[Expectation]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c, notes=why, **kwargs) for c in columns]


def raw_events_suite(settings: ValidationSettings | None = None) -> Suite:
    """Rules for a sample of raw input events (parsed JSON, before the stream validates them).

    The stream quarantines a bad event and goes on, so single bad events are normal; this
    gate catches a producer that broke (a missing field, a new reaction name, timestamps
    without a zone) before it floods the quarantine. Row rules hold for ``raw_events_mostly``
    of the rows, not all.
    """
    t = _thresholds(settings)
    m = t.raw_events_mostly
    response, reaction = 'type=="response"', 'type=="reaction"'
    exps: list[Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, notes="an empty sample says nothing about the producers"),
        gxe.ExpectColumnValuesToNotBeNull(column="type", mostly=m, notes="the type decides how an event is read"),
        gxe.ExpectColumnValuesToBeInSet(column="type", value_set=["response", "reaction"], mostly=m,
                                        notes="only two event types exist (docs/events.md)"),
        *_not_null(["event_id", "response_id", "user_id", "ts"], "every event carries its ids and event time",
                   mostly=m),
        gxe.ExpectColumnValuesToBeUnique(column="event_id", mostly=m,
                                         notes="a repeated event_id is a producer retry; many mean a replay loop"),
        gxe.ExpectColumnValuesToNotBeNull(column="conversation_id", mostly=m, row_condition=response,
                                          condition_parser="pandas",
                                          notes="train/validation/test are split by conversation"),
        gxe.ExpectColumnValuesToNotBeNull(column="context", mostly=m, row_condition=response,
                                          condition_parser="pandas", notes="a response without context cannot be "
                                          "learned from"),
        gxe.ExpectColumnValuesToNotBeNull(column="reaction", mostly=m, row_condition=reaction,
                                          condition_parser="pandas", notes="a reaction names its emoji"),
        gxe.ExpectColumnValuesToBeInSet(column="reaction", value_set=list(REACTION_KINDS), mostly=m,
                                        notes="the reaction kinds of the event contract"),
        gxe.ExpectColumnValuesToBeInSet(column="action", value_set=["add", "remove"], mostly=m,
                                        notes="add, or remove to un-react (missing means add)"),
        gxe.ExpectColumnValuesToMatchRegex(column="ts", regex=_ISO_WITH_ZONE, mostly=m,
                                           notes="event time is ISO-8601 with a zone; without one it is ambiguous"),
        gxe.ExpectColumnValuesToBeDateutilParseable(column="ts", mostly=m, notes="event time must parse"),
    ]
    return Suite("raw_events", (Check("rows", tuple(exps), _raw_rows, "event_id", "producer output"),))


def triples_suite(settings: ValidationSettings | None = None, *, now: datetime) -> Suite:
    """Rules for the landed ``triples`` table, the input of every training run.

    Args:
        settings: ``Settings.validation`` (default thresholds when None).
        now: The clock the freshness rule measures against (aware, or naive UTC).
    """
    t = _thresholds(settings)
    rows: list[Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, notes="no triples, nothing to train on"),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(TRIPLE_COLUMNS), exact_match=False,
                                         notes="columns the training export reads"),
        gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=_INT_TYPES, notes="label is an integer 0/1"),
        gxe.ExpectColumnValuesToBeInTypeList(column="weight", type_list=_FLOAT_TYPES, notes="weight is a float"),
        gxe.ExpectColumnValuesToBeInTypeList(column="ts", type_list=_TS_TYPES, notes="event time is a timestamp"),
        gxe.ExpectColumnValuesToBeInTypeList(column="window_closed_at", type_list=_TS_TYPES,
                                             notes="close time is a timestamp"),
        *_not_null(["response_id", "user_id", "conversation_id", "label", "weight", "ts", "window_closed_at"],
                   "keys and labels are never missing"),
        gxe.ExpectColumnValuesToBeUnique(column="response_id",
                                         notes="one triple per response: a duplicate counts one answer twice"),
        gxe.ExpectColumnValuesToNotBeNull(column="context", notes="the model scores (context, response); "
                                          "GX sees the context as its number of turns"),
        gxe.ExpectColumnValuesToBeBetween(column="context", min_value=1,
                                          notes="turns of context: an empty one teaches the model nothing"),
        gxe.ExpectColumnValuesToNotBeNull(column="response", notes="the answer text is what is scored"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1], notes="P[Love] is a binary target"),
        gxe.ExpectColumnValuesToBeBetween(column="weight", min_value=0.0, max_value=1.0,
                                          notes="1.0, or filters.low_info_weight for constant users"),
        gxe.ExpectColumnMeanToBeBetween(column="label", min_value=t.love_rate_min, max_value=t.love_rate_max,
                                        notes="overall Love rate: too low means lost Loves, too high an attack or bug"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="response", min_value=1, max_value=t.response_max_chars,
                                                mostly=t.response_length_mostly,
                                                notes="empty or huge answers are broken renders, not feedback"),
        gxe.ExpectColumnMedianToBeBetween(column="response_chars", min_value=t.response_median_chars_min,
                                          max_value=t.response_median_chars_max,
                                          notes="the length distribution moved: truncation or a template change"),
    ]
    daily: list[Expectation] = [
        gxe.ExpectColumnValuesToBeBetween(
            column="love_rate_jump", max_value=t.love_rate_jump_factor,
            notes=f"newest day's Love rate over the trailing {t.love_rate_trailing_days} days' rate; a jump is "
            "an attack (coordinated Loves) or a labeling bug. Empty when the day is too small to judge."),
    ]
    share: list[Expectation] = [
        gxe.ExpectColumnValuesToBeBetween(
            column="share", max_value=t.max_user_label_share,
            notes="no single user may hold this share of all positive labels; empty below "
            f"{t.user_share_min_labels} positives"),
    ]
    fresh: list[Expectation] = [
        gxe.ExpectColumnMaxToBeBetween(column="age_days", max_value=t.freshness_days,
                                       notes="days since the newest window closed: the stream may have stopped"),
    ]
    checks = (
        Check("rows", tuple(rows), _triple_rows, "response_id", "schema, keys, labels, lengths"),
        Check("daily_love_rate", tuple(daily), lambda f: daily_love_rate_frame(f, t), None,
              "newest day's Love rate against the trailing days"),
        Check("user_label_share", tuple(share), lambda f: user_label_share_frame(f, t), "user_id",
              "per-user share of the positive labels"),
        Check("freshness", tuple(fresh), lambda f: freshness_frame(f, now), None, "age of the newest triple"),
    )
    return Suite("triples", checks, {"now": now.isoformat()})


def quarantine_suite(settings: ValidationSettings | None = None, *, accepted_events: int) -> Suite:
    """Rules for the ``quarantine`` table and the share of input it holds.

    Args:
        settings: ``Settings.validation`` (default thresholds when None).
        accepted_events: Input events that made it into the lake, the denominator's other half.
    """
    t = _thresholds(settings)
    rows: list[Expectation] = [
        *_not_null(["quarantine_id", "reason", "quarantined_at"], "every refusal is recorded with its reason"),
        gxe.ExpectColumnValuesToBeUnique(column="quarantine_id", notes="one row per refused input position"),
        gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=list(QUARANTINE_REASONS),
                                        notes="reasons of the event contract"),
    ]
    rate: list[Expectation] = [
        gxe.ExpectColumnMaxToBeBetween(column="quarantine_rate", min_value=0.0, max_value=t.max_quarantine_rate,
                                       notes="quarantined / (quarantined + accepted): above it, a producer or "
                                       "a filter is broken"),
    ]

    def _rows(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for name in ("quarantine_id", "reason", "quarantined_at"):
            if name not in out.columns:
                out[name] = pd.Series([None] * len(out), index=out.index, dtype=object)
            elif name == "quarantined_at":
                out[name] = _utc_naive(out[name])
        return out

    return Suite("quarantine", (
        Check("rows", tuple(rows), _rows, "quarantine_id", "refusal records"),
        Check("rate", tuple(rate), lambda f: quarantine_rate_frame(len(f), accepted_events), None,
              "share of input refused"),
    ), {"accepted_events": accepted_events})


def training_set_suite(settings: ValidationSettings | None = None) -> Suite:
    """Rules for a training-set parquet file, the trainer's exact input.

    A conversation in two splits leaks its answers from train into evaluation (metrics look
    better than they are), so the split check is strict.
    """
    del settings  # no thresholds yet; the argument keeps the suite functions interchangeable
    rows: list[Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, notes="an empty training set"),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(TRAINING_SET_COLUMNS), exact_match=False,
                                         notes="columns the trainer and the split check read"),
        *_not_null(["split", "label", "weight", "response", "conversation_id"], "rows are complete"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS), notes="the three splits"),
        gxe.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train", "validation"],
                                                   notes="train and validation must not be empty"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1], notes="P[Love] is a binary target"),
        gxe.ExpectColumnValuesToBeBetween(column="weight", min_value=0.0, max_value=1.0,
                                          notes="weights are in [0, 1]"),
    ]
    splits: list[Expectation] = [
        gxe.ExpectColumnValuesToBeUnique(column="conversation_id",
                                         notes="one conversation, one split: otherwise evaluation leaks"),
    ]
    return Suite("training_set", (
        Check("rows", tuple(rows), nested_as_length, None, "schema, labels, splits"),
        Check("conversation_splits", tuple(splits), conversation_splits_frame, None,
              "conversations that appear in more than one split"),
    ))
