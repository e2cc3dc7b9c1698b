"""`rluf import` on the real public data in shared/data: exact counts, wire validity, errors."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rluf.errors import InputFileError
from rluf.schemas import EVENT_ADAPTER, ReactionEvent, ResponseEvent
from streams.sources.importers.catalog import import_source
from streams.sources.importers.hh_rlhf import PreferencePair, hh_rlhf_events, load_pairs
from streams.sources.importers.oasst import oasst_events
from streams.sources.importers.wire_events import ImportResult, positive_quota, write_events

DATA = Path(__file__).resolve().parents[5].parent / "shared" / "data"
OASST = DATA / "oasst1-en-validation" / "en-validation.jsonl"
HH = DATA / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data directory at {DATA}")


@pytest.fixture(scope="module")
def oasst() -> ImportResult:
    return oasst_events(OASST)


@pytest.fixture(scope="module")
def hh() -> ImportResult:
    return hh_rlhf_events(HH)


def _raw_oasst() -> list[dict]:
    return [json.loads(line) for line in OASST.read_text(encoding="utf-8").splitlines() if line.strip()]


def _emoji(msg: dict) -> dict[str, int]:
    e = msg["emojis"] or {"name": [], "count": []}
    return dict(zip(e["name"], e["count"], strict=True))


def _recount_oasst() -> Counter[str]:
    """Independent tiny recount of the README recipe over the replies the importer keeps."""
    raw = _raw_oasst()
    by_id = {m["message_id"]: m for m in raw}
    out: Counter[str] = Counter()
    for m in raw:
        if m["role"] != "assistant":
            continue
        out["replies"] += 1
        plus1, minus1 = _emoji(m).get("+1", 0), _emoji(m).get("-1", 0)
        out["readme_positive"] += plus1 >= 1 and plus1 > minus1
        if m["deleted"]:
            out["skip_deleted"] += 1
            continue
        node, broken = m, False
        while node["parent_id"] is not None:
            if node["parent_id"] not in by_id:
                broken = True
                break
            node = by_id[node["parent_id"]]
        if broken:
            out["skip_missing_parent"] += 1
            continue
        out["kept"] += 1
        out["love"] += plus1 >= 1 and plus1 > minus1
        out["thumbs_down"] += not (plus1 >= 1 and plus1 > minus1) and minus1 > plus1
    return out


def _validated(result: ImportResult, tmp_path: Path) -> list[ResponseEvent | ReactionEvent]:
    out = tmp_path / "events.jsonl"
    n = write_events(result, out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert n == len(lines) == len(result.events)
    return [EVENT_ADAPTER.validate_json(line) for line in lines]


def _check_events(events: list[ResponseEvent | ReactionEvent]) -> None:
    responses = {e.response_id: e for e in events if isinstance(e, ResponseEvent)}
    assert len({e.event_id for e in events}) == len(events)
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    for r in responses.values():
        assert r.context and r.context[-1].role == "user"
    for e in events:
        if isinstance(e, ReactionEvent):
            shown = responses[e.response_id]
            assert e.user_id == shown.user_id  # the owner reacts
            delay = e.ts - shown.ts
            assert delay >= timedelta(milliseconds=max(300, 8 * len(shown.response)))
            assert delay < timedelta(hours=3)


# --- oasst ---------------------------------------------------------------------------------


def test_oasst_counts_match_the_readme_and_an_independent_recount(oasst: ImportResult) -> None:
    want = _recount_oasst()
    assert want["replies"] == 1243
    assert want["readme_positive"] == 649
    assert oasst.responses == want["kept"] == 1213
    assert oasst.loves == want["love"] == 645
    assert oasst.thumbs_down == want["thumbs_down"] == 170
    assert oasst.skipped == {"deleted": want["skip_deleted"], "missing_parent": want["skip_missing_parent"]}
    assert oasst.skipped == {"deleted": 28, "missing_parent": 2}
    assert oasst.responses + sum(oasst.skipped.values()) == 1243


def test_oasst_events_are_valid_wire_events_built_from_the_thread(oasst: ImportResult, tmp_path: Path) -> None:
    events = _validated(oasst, tmp_path)
    _check_events(events)
    raw = {m["message_id"]: m for m in _raw_oasst()}
    responses = [e for e in events if isinstance(e, ResponseEvent)]
    assert len(responses) == 1213
    assert Counter(e.reaction for e in events if isinstance(e, ReactionEvent)) == {"love": 645, "thumbs_down": 170}
    for r in responses:
        msg, parent = raw[r.response_id], raw[raw[r.response_id]["parent_id"]]
        assert r.conversation_id == msg["message_tree_id"]
        assert r.user_id == parent["user_id"] and parent["role"] == "prompter"
        assert r.context[-1].content == parent["text"] and r.response == msg["text"]
        assert timedelta(0) <= datetime.fromisoformat(msg["created_date"]) - r.ts < timedelta(milliseconds=1)
        assert r.policy_version == "oasst-human"
        assert r.extra["source"] == "oasst1" and r.extra["emoji"] == {
            k: v for k, v in _emoji(msg).items() if not k.startswith("_")
        }


def test_oasst_love_rate_samples_positives_down(oasst: ImportResult) -> None:
    negatives = oasst.responses - oasst.loves  # 568, all kept
    k = round(0.02 * negatives / 0.98)  # documented rounding: nearest, capped at the positives
    assert k == 12 == positive_quota(oasst.loves, negatives, 0.02)
    low = oasst_events(OASST, love_rate=0.02, seed=0)
    assert (low.responses, low.loves, low.thumbs_down) == (negatives + k, k, oasst.thumbs_down)
    assert low.skipped["love_rate"] == oasst.loves - k
    assert 0.0195 < low.loves / low.responses < 0.021
    other = oasst_events(OASST, love_rate=0.02, seed=1)
    loved = {e["response_id"] for e in low.events if e.get("reaction") == "love"}
    assert other.loves == k and loved != {e["response_id"] for e in other.events if e.get("reaction") == "love"}


# --- hh-rlhf -------------------------------------------------------------------------------


def test_hh_counts(hh: ImportResult) -> None:
    assert (hh.responses, hh.loves, hh.thumbs_down, hh.skipped) == (4624, 2312, 0, {})


def test_hh_events_are_valid_and_pairwise(hh: ImportResult, tmp_path: Path) -> None:
    events = _validated(hh, tmp_path)
    _check_events(events)
    responses = [e for e in events if isinstance(e, ResponseEvent)]
    by_conversation: dict[str, list[ResponseEvent]] = {}
    for r in responses:
        by_conversation.setdefault(r.conversation_id, []).append(r)
    assert len(by_conversation) == 2312
    assert all(len(rs) == 2 and rs[0].user_id == rs[1].user_id and rs[0].context == rs[1].context
               for rs in by_conversation.values())
    loved = {e.response_id for e in events if isinstance(e, ReactionEvent)}
    assert loved == {f"hh-{i}-chosen" for i in range(2312)}
    # The order shown does not give the label away.
    first = Counter(rs[0].extra["side"] for rs in by_conversation.values())
    assert 1000 < first["chosen"] < 1312
    assert min(r.ts for r in responses) >= datetime(2026, 10, 1, tzinfo=UTC)
    assert max(r.ts for r in responses) - min(r.ts for r in responses) > timedelta(days=7)


def test_hh_load_pairs_share_the_context() -> None:
    pairs = load_pairs(HH)
    assert len(pairs) == 2312 and all(isinstance(p, PreferencePair) for p in pairs)
    assert pairs[0].pair_id == "hh-0" and pairs[-1].pair_id == "hh-2311"
    assert all(p.context and p.context[0].role == "user" and p.context[-1].role == "user" for p in pairs)
    first = json.loads(gzip.decompress(HH.read_bytes()).decode("utf-8").splitlines()[0])
    assert first["chosen"].endswith(pairs[0].chosen) and first["rejected"].endswith(pairs[0].rejected)


def test_hh_love_rate_samples_positives_down(hh: ImportResult) -> None:
    k = round(0.02 * 2312 / 0.98)
    assert k == 47
    low = hh_rlhf_events(HH, love_rate=0.02, seed=0)
    assert (low.responses, low.loves, low.skipped) == (2312 + k, k, {"love_rate": 2312 - k})


# --- shared --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    import_source("hh-rlhf", HH, a, love_rate=0.02, seed=7)
    import_source("hh-rlhf", HH, b, love_rate=0.02, seed=7)
    import_source("hh-rlhf", HH, c, love_rate=0.02, seed=8)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    write_events(oasst_events(OASST, seed=3), a)
    write_events(oasst_events(OASST, seed=3), b)
    assert a.read_bytes() == b.read_bytes()


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    good = OASST.read_text(encoding="utf-8").splitlines()[:2]
    bad = tmp_path / "broken-oasst.jsonl"
    bad.write_text("\n".join([*good, '{"message_id": "x", ', *good]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="not valid JSON") as err:
        oasst_events(bad)
    assert "broken-oasst.jsonl:3:" in str(err.value)

    pairs = gzip.decompress(HH.read_bytes()).decode("utf-8").splitlines()[:2]
    bad_hh = tmp_path / "broken-hh.jsonl.gz"
    with gzip.open(bad_hh, "wt", encoding="utf-8") as fh:
        fh.write("\n".join([*pairs, "not json", *pairs]) + "\n")
    for load in (hh_rlhf_events, load_pairs):
        with pytest.raises(InputFileError) as err:
            load(bad_hh)
        assert "broken-hh.jsonl.gz:3:" in str(err.value)


def test_missing_field_is_named_with_its_line(tmp_path: Path) -> None:
    lines = OASST.read_text(encoding="utf-8").splitlines()[:3]
    record = json.loads(lines[1])
    del record["text"]
    bad = tmp_path / "no-text.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"no-text\.jsonl:2: missing field 'text'"):
        oasst_events(bad)

    bad_hh = tmp_path / "no-rejected.jsonl"
    bad_hh.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello"}) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"no-rejected\.jsonl:1: missing field 'rejected'"):
        load_pairs(bad_hh)


def test_missing_file(tmp_path: Path) -> None:
    for load in (oasst_events, hh_rlhf_events, load_pairs):
        with pytest.raises(InputFileError, match=r"nope\.jsonl: no such file"):
            load(tmp_path / "nope.jsonl")
    with pytest.raises(InputFileError, match="no such file"):
        import_source("oasst", tmp_path / "nope.jsonl", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="love_rate"):
        positive_quota(10, 10, 1.0)
    with pytest.raises(ValueError, match="unknown source"):
        import_source("reddit", HH, Path("unused.jsonl"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UTC offset"):
        hh_rlhf_events(HH, start=datetime(2026, 10, 1))


def test_unsplittable_dialogues_are_counted_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
        {"chosen": "\n\nHuman: only a question", "rejected": "\n\nHuman: only a question"},
        {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"},
        {"chosen": "\n\nHuman: a\n\nAssistant: one\n\nAssistant: two", "rejected": "\n\nHuman: a\n\nAssistant: z"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = hh_rlhf_events(path)
    assert result.skipped == {"unparseable_dialogue": 1, "context_mismatch": 1}
    assert (result.responses, result.loves) == (4, 2)
    pairs = load_pairs(path)
    assert [p.pair_id for p in pairs] == ["hh-0", "hh-3"]
    assert pairs[1].chosen == "one\n\ntwo"
