"""`rluf simulate`: determinism, realistic rates, adversaries that trip the filters, honest users that don't.

The rule checks below are written again from the ``FilterSettings`` wording, independently of
the simulator's own reference check, so a bug in one does not hide a bug in the other.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from rluf.schemas import EVENT_ADAPTER, ReactionEvent, ResponseEvent, ValidationError
from rluf.settings import FilterSettings, SimulationSettings
from streams.sources.simulator.simulate import Simulation, reading_time_ms, simulate, write_simulation
from streams.sources.simulator.text_corpus import Corpus, load_corpus, template_corpus

WINDOW_S = 86_400.0
FILTERS = FilterSettings()
CFG = SimulationSettings(users=200, responses=10_000, love_rate=0.02, seed=11)
ROOT = Path(__file__).resolve().parents[5]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return template_corpus(seed=0, threads=1500)


@pytest.fixture(scope="module")
def sim(corpus: Corpus) -> Simulation:
    return simulate(CFG, FILTERS, window_s=WINDOW_S, corpus=corpus)


@pytest.fixture(scope="module")
def parsed(sim: Simulation) -> dict:
    """Valid unique events, duplicate and malformed line numbers (1-based), as a consumer sees them."""
    events: list[ResponseEvent | ReactionEvent] = []
    seen: set[str] = set()
    bad, dups = [], []
    for no, line in enumerate(sim.lines, start=1):
        try:
            ev = EVENT_ADAPTER.validate_json(line)
        except ValidationError:
            bad.append(no)
            continue
        if ev.event_id in seen:
            dups.append(no)
            continue
        seen.add(ev.event_id)
        events.append(ev)
    responses = {e.response_id: e for e in events if isinstance(e, ResponseEvent)}
    reactions = [e for e in events if isinstance(e, ReactionEvent)]
    return {"events": events, "responses": responses, "reactions": reactions, "bad": bad, "dups": dups}


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _check_rules(reactions: list[ReactionEvent], responses: dict[str, ResponseEvent],
                 f: FilterSettings) -> dict[str, set[str]]:
    """Independent reading of the filter rules; each rule judged on its own, in event-time order."""
    out: dict[str, set[str]] = defaultdict(set)
    tokens: dict[str, float] = {}
    last: dict[str, int] = {}
    daily: Counter[tuple[str, str]] = Counter()
    by_text: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for r in sorted(reactions, key=lambda r: (r.ts, r.event_id)):
        resp = responses[r.response_id]
        if r.user_id != resp.user_id:
            out[r.event_id].add("not_owner")
        if _ms(r.ts) - _ms(resp.ts) < max(f.min_read_ms, f.ms_per_char * len(resp.response)):
            out[r.event_id].add("too_fast")
        t = tokens.get(r.user_id, f.rate_capacity)
        if r.user_id in last:
            t = min(f.rate_capacity, t + (_ms(r.ts) - last[r.user_id]) / 1000 * f.rate_per_s)
        last[r.user_id] = _ms(r.ts)
        if t < 1:
            out[r.event_id].add("rate_limited")
        else:
            t -= 1
        tokens[r.user_id] = t
        daily[(r.user_id, r.ts.date().isoformat())] += 1
        if daily[(r.user_id, r.ts.date().isoformat())] > f.daily_cap:
            out[r.event_id].add("daily_cap")
        if r.reaction == "love" and r.action == "add":
            by_text[resp.response].append((_ms(r.ts), r.user_id, r.event_id))
    for loves in by_text.values():
        for t0, _, _ in loves:
            inside = [x for x in loves if t0 <= x[0] <= t0 + f.burst_window_s * 1000]
            if len({u for _, u, _ in inside}) >= f.burst_users:
                for _, _, eid in inside:
                    out[eid].add("coordinated")
    return out


def test_same_seed_gives_identical_files_even_across_processes(corpus: Corpus, tmp_path: Path) -> None:
    cfg = SimulationSettings(users=30, responses=1500, seed=5)
    a = simulate(cfg, FILTERS, window_s=WINDOW_S, corpus=corpus)
    b = simulate(cfg, FILTERS, window_s=WINDOW_S, corpus=corpus)
    write_simulation(a, tmp_path / "a.jsonl", tmp_path / "a.json")
    write_simulation(b, tmp_path / "b.jsonl", tmp_path / "b.json")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    script = (
        "import sys; from pathlib import Path; from rluf.settings import *;"
        "from streams.sources.simulator.simulate import *;"
        "from streams.sources.simulator.text_corpus import template_corpus;"
        "s = simulate(SimulationSettings(users=30, responses=1500, seed=5), FilterSettings(), window_s=86400.0,"
        " corpus=template_corpus(seed=0, threads=1500));"
        "write_simulation(s, Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.jsonl"), str(tmp_path / "c.json")],
                   check=True, cwd=ROOT, env=env, timeout=120)
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert (tmp_path / "c.json").read_bytes() == (tmp_path / "a.json").read_bytes()
    other = simulate(cfg.model_copy(update={"seed": 6}), FILTERS, window_s=WINDOW_S, corpus=corpus)
    assert other.lines != a.lines


def test_counts_match_the_settings(sim: Simulation, parsed: dict) -> None:
    counts = sim.truth.counts
    assert counts["responses"] == CFG.responses == len(parsed["responses"])
    assert counts["reactions"] == len(parsed["reactions"])
    assert counts["events"] == len(parsed["events"])
    assert counts["lines"] == len(sim.lines) == counts["events"] + counts["duplicates"] + counts["malformed"]
    roles = Counter(sim.truth.users.values())
    assert roles == {"normal": CFG.users, "bot": CFG.bots, "coordinated": CFG.coordinated_groups * CFG.group_size,
                     "troll": CFG.trolls, "constant_lover": CFG.constant_lovers}


def test_normal_love_rate_is_close_to_the_setting(sim: Simulation, parsed: dict) -> None:
    roles = sim.truth.users
    normal = [r for r in parsed["responses"].values() if roles[r.user_id] == "normal"]
    loves = [r for r in parsed["reactions"] if roles[r.user_id] == "normal" and r.reaction == "love"
             and r.action == "add"]
    rate = len(loves) / len(normal)
    sigma = math.sqrt(CFG.love_rate * (1 - CFG.love_rate) / len(normal))
    assert abs(rate - CFG.love_rate) < 3 * sigma, (rate, sigma)
    assert sim.stats()["normal_love_rate"] == round(rate, 5)
    removes = [r for r in parsed["reactions"] if r.action == "remove"]
    assert abs(len(removes) / len(loves) - CFG.unreact_rate) < 0.05
    assert all(roles[r.user_id] == "normal" and r.reaction == "love" for r in removes)


def test_every_adversarial_event_is_a_reaction_in_the_file_and_trips_a_rule(sim: Simulation, parsed: dict) -> None:
    reactions = {r.event_id: r for r in parsed["reactions"]}
    adv = sim.truth.adversarial
    assert set(adv) <= set(reactions)
    assert all(sim.truth.users[reactions[e].user_id] == kind for e, kind in adv.items())
    kinds = Counter(adv.values())
    assert kinds["coordinated"] == CFG.coordinated_groups * CFG.group_size
    assert kinds["bot"] > CFG.bots * (FILTERS.rate_capacity + 3)
    assert kinds["troll"] >= CFG.trolls * 12
    rules = _check_rules(parsed["reactions"], parsed["responses"], FILTERS)
    assert all(rules[e] for e in adv), [e for e in adv if not rules[e]][:3]
    assert {e: sorted(rules[e]) for e in adv} == {e: sorted(v) for e, v in sim.truth.adversarial_rules.items()}
    # each kind trips what it was built to trip
    assert all("too_fast" in rules[e] for e, k in adv.items() if k == "bot")
    assert all(rules[e] == {"not_owner"} for e, k in adv.items() if k == "troll")
    assert all(rules[e] == {"coordinated"} for e, k in adv.items() if k == "coordinated")
    bots = [e for e, k in adv.items() if k == "bot"]
    assert sum("rate_limited" in rules[e] for e in bots) > 0
    assert sum("daily_cap" in rules[e] for e in bots) > 0


def test_honest_users_never_trip_a_rule(sim: Simulation, parsed: dict) -> None:
    rules = _check_rules(parsed["reactions"], parsed["responses"], FILTERS)
    honest = [r for r in parsed["reactions"] if r.event_id not in sim.truth.adversarial]
    assert {sim.truth.users[r.user_id] for r in honest} == {"normal", "constant_lover"}
    assert [r.event_id for r in honest if rules[r.event_id]] == []
    # and with a wide margin: 3x the reading time, half the daily cap
    for r in honest:
        resp = parsed["responses"][r.response_id]
        assert _ms(r.ts) - _ms(resp.ts) >= 3 * reading_time_ms(resp.response, FILTERS)
    per_day = Counter((r.user_id, r.ts.date()) for r in honest)
    assert max(per_day.values()) <= FILTERS.daily_cap // 2


def test_noise_counts_are_exact(sim: Simulation, parsed: dict) -> None:
    counts = sim.truth.counts
    assert counts["malformed"] == round(CFG.malformed_rate * counts["events"]) == len(parsed["bad"])
    assert counts["duplicates"] == round(CFG.duplicate_rate * counts["events"]) == len(parsed["dups"])
    assert sim.truth.malformed_lines == parsed["bad"]
    assert sim.truth.duplicate_lines == parsed["dups"]
    first = {}
    for no, line in enumerate(sim.lines, start=1):
        first.setdefault(line, no)
    assert all(first[sim.lines[no - 1]] < no for no in parsed["dups"])  # byte-identical re-sends
    kept = [e for e in parsed["events"] if e.extra]
    assert len(kept) == counts["unknown_field_events"] > 0
    assert all(set(e.extra) <= {"client", "locale", "trace_id", "ab_bucket"} for e in kept)


def test_coordinated_groups_share_one_answer_and_burst(sim: Simulation, parsed: dict) -> None:
    reactions = {r.event_id: r for r in parsed["reactions"]}
    answers = set()
    for group in sim.truth.coordinated_groups:
        resps = [parsed["responses"][rid] for rid in group["response_ids"]]
        loves = [reactions[e] for e in group["reaction_event_ids"]]
        assert len({r.response for r in resps}) == 1
        answers.add(resps[0].response)
        assert len({r.user_id for r in resps}) == len({r.conversation_id for r in resps}) == CFG.group_size
        assert all(r.user_id == parsed["responses"][r.response_id].user_id for r in loves)
        times = sorted(_ms(r.ts) for r in loves)
        assert times[-1] - times[0] <= FILTERS.burst_window_s * 1000
        thr = reading_time_ms(resps[0].response, FILTERS)
        assert all(_ms(r.ts) - _ms(parsed["responses"][r.response_id].ts) >= 3 * thr for r in loves)
    assert len(answers) == CFG.coordinated_groups
    others = [r for r in parsed["responses"].values() if r.response in answers]
    assert len(others) == CFG.coordinated_groups * CFG.group_size


def test_labels_and_corrections_follow_the_owners_love_at_close(sim: Simulation, parsed: dict) -> None:
    window_ms = WINDOW_S * 1000
    by_resp: dict[str, list[ReactionEvent]] = defaultdict(list)
    for r in parsed["reactions"]:
        resp = parsed["responses"][r.response_id]
        if r.reaction == "love" and r.user_id == resp.user_id and r.event_id not in sim.truth.adversarial:
            by_resp[r.response_id].append(r)
    labels, late = {}, {}
    for rid, resp in parsed["responses"].items():
        close = _ms(resp.ts) + window_ms
        held = False
        for r in sorted(by_resp[rid], key=lambda r: r.ts):
            if _ms(r.ts) <= close:
                held = r.action == "add"
            else:
                late[rid] = r.event_id
        labels[rid] = int(held)
    assert labels == sim.truth.labels
    expected = {c.response_id: c.reaction_event_id for c in sim.truth.expected_corrections}
    assert expected == {rid: e for rid, e in late.items() if labels[rid] == 0}
    assert len(expected) > 0
    for c in sim.truth.expected_corrections:
        assert 0 < c.lateness_s <= 3 * 3600 + 600
    bots = {u for u, role in sim.truth.users.items() if role in ("bot", "coordinated")}
    assert all(labels[r.response_id] == 0 for r in parsed["responses"].values() if r.user_id in bots)


def test_constant_lovers_are_low_information_and_normal_users_are_not(sim: Simulation, parsed: dict) -> None:
    owned, loved = Counter(), Counter()
    for r in parsed["responses"].values():
        owned[r.user_id] += 1
    for r in parsed["reactions"]:
        if r.reaction == "love" and r.action == "add" and r.user_id == parsed["responses"][r.response_id].user_id:
            loved[r.user_id] += 1
    low = sim.truth.low_information_users
    assert len(low) == CFG.constant_lovers
    for u in low:
        assert owned[u] >= 2 * FILTERS.low_info_min_events
        assert loved[u] / owned[u] >= FILTERS.low_info_love_rate
    normal = [u for u, role in sim.truth.users.items() if role == "normal"]
    assert max(loved[u] / owned[u] for u in normal) < FILTERS.low_info_love_rate / 2


def test_send_order_is_event_time_with_small_jitter(sim: Simulation, parsed: dict) -> None:
    latest, worst = 0, 0
    sent_at: dict[str, int] = {}
    for i, e in enumerate(parsed["events"]):
        worst = max(worst, latest - _ms(e.ts))
        latest = max(latest, _ms(e.ts))
        sent_at[e.event_id] = i
    assert 0 < worst <= 30_000  # reordered, but never by more than the stream's allowed lateness
    responses = parsed["responses"]
    early = [r for r in parsed["reactions"] if sent_at[responses[r.response_id].event_id] > sent_at[r.event_id]]
    assert len(early) > 0


def test_too_small_a_budget_is_refused(corpus: Corpus) -> None:
    with pytest.raises(ValueError, match=r"simulation\.responses=100 leaves"):
        simulate(SimulationSettings(users=50, responses=100), FILTERS, window_s=WINDOW_S, corpus=corpus)


def test_template_corpus_is_seeded_and_well_formed() -> None:
    a, b = template_corpus(seed=1, threads=200), template_corpus(seed=1, threads=200)
    assert a == b
    assert a != template_corpus(seed=2, threads=200)
    exchanges = [ex for t in a.threads for ex in t]
    assert all(1 <= len(ex.context) <= 4 and ex.context[-1].role == "user" for ex in exchanges)
    assert len({ex.answer for ex in exchanges}) > 0.8 * len(exchanges)
    assert any("\n1. " in ex.answer for ex in exchanges) and any("**" in ex.answer for ex in exchanges)
    assert load_corpus(None, seed=1, template_threads=200) == a


def test_load_corpus_rebuilds_oasst_threads_and_splits_hh_turns(tmp_path: Path) -> None:
    oasst = tmp_path / "oasst1-en-validation" / "en-validation.jsonl"
    oasst.parent.mkdir(parents=True)
    msgs = [
        {"message_id": "a", "parent_id": None, "role": "prompter", "text": "What is a heat pump?"},
        {"message_id": "b", "parent_id": "a", "role": "assistant", "text": "It moves heat.",
         "emojis": {"name": ["+1"], "count": [3]}},
        {"message_id": "c", "parent_id": "b", "role": "prompter", "text": "In winter too?"},
        {"message_id": "d", "parent_id": "c", "role": "assistant", "text": "Yes, below zero as well."},
        {"message_id": "e", "parent_id": "a", "role": "assistant", "text": "gone", "deleted": True},
    ]
    oasst.write_text("".join(json.dumps(m) + "\n" for m in msgs), encoding="utf-8")
    hh = tmp_path / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    hh.parent.mkdir(parents=True)
    pair = {"chosen": "\n\nHuman: hi\n\nAssistant: Hello!\n\nHuman: help me\n\nAssistant: Sure.",
            "rejected": "\n\nHuman: hi\n\nAssistant: Hello!\n\nHuman: help me\n\nAssistant: No."}
    with gzip.open(hh, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(pair) + "\n")
    corpus = load_corpus(tmp_path)
    assert corpus.source == "oasst1+hh-rlhf"
    oasst_thread, chosen, rejected = corpus.threads
    assert [ex.answer for ex in oasst_thread] == ["It moves heat.", "Yes, below zero as well."]
    assert [t.content for t in oasst_thread[1].context] == ["What is a heat pump?", "It moves heat.", "In winter too?"]
    assert oasst_thread[0].quality == 1.0
    assert [ex.answer for ex in chosen] == ["Hello!", "Sure."]
    assert (chosen[-1].quality, rejected[-1].quality, rejected[-1].answer) == (0.7, 0.3, "No.")
    assert [t.role for t in chosen[-1].context] == ["user", "assistant", "user"]
