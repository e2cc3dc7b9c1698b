"""`rluf simulate`: seeded chat traffic with exact ground truth for the tests, demo and filter benchmark.

The generator writes what a chat product's producer would send: ``response`` events (an
assistant answer with its context) and ``reaction`` events (emoji add/remove), in roughly
event-time order with small send jitter, plus duplicate re-sends and malformed lines. Next to
the normal users it plants adversaries that the filters must quarantine (bots, coordinated
groups, trolls) and constant Lovers that must only be down-weighted, and it records, per
reaction and per response, what a perfect pipeline would do.

Ground truth is exact because the traffic is built around the rules rather than sampled and
hoped for: every normal reaction keeps a wide margin from each filter (reading time >= 3x the
too-fast threshold, token bucket at least half full, at most half the daily cap, never part
of a Love burst, at least 10 minutes (or a tenth of the window) from a window close), and every
adversarial reaction trips at least one rule by construction (bots always react faster than
the reading time; coordinated accounts Love one planted answer within a fraction of the burst
window; trolls react to other users' answers). A reference evaluation of the rules
(``reference_rules``, beside this module) checks both sides before anything is returned. The
traffic itself is built in ``traffic`` and written in ``wire_lines``.

Pure: all randomness comes from ``random.Random(cfg.seed)`` and time only from ``cfg.start``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from rluf.settings import FilterSettings, SimulationSettings
from streams.sources.simulator.reference_rules import reading_time_ms, tripped_rules
from streams.sources.simulator.text_corpus import Corpus
from streams.sources.simulator.traffic import MS_PER_S, AdversaryKind, SimReaction, Traffic, UserRole
from streams.sources.simulator.wire_lines import serialise

__all__ = [
    "AdversaryKind",
    "UserRole",
    "TRUTH_FORMAT",
    "ExpectedCorrection",
    "GroundTruth",
    "Simulation",
    "reading_time_ms",
    "simulate",
    "write_simulation",
]

logger = logging.getLogger(__name__)

TRUTH_FORMAT = "rluf-simulation-truth/1"

_S = MS_PER_S


@dataclass(frozen=True, slots=True)
class ExpectedCorrection:
    """A late Love that should turn a landed label 0 into 1."""

    response_id: str
    user_id: str
    reaction_event_id: str
    reaction_ts: str
    window_closed_at: str
    lateness_s: float
    action: Literal["add", "remove"] = "add"
    old_label: int = 0
    new_label: int = 1


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a perfect pipeline does with the simulated events.

    Attributes:
        adversarial: Reaction event_id -> the adversary kind that sent it; all must be quarantined.
        adversarial_rules: Reaction event_id -> the filter rules it trips under the
            ``FilterSettings`` given to :func:`simulate`, each rule evaluated on its own
            (``not_owner``, ``too_fast``, ``rate_limited``, ``daily_cap``, ``coordinated``).
        low_information_users: Users whose triples should be down-weighted, not quarantined.
        users: user_id -> role, for every user in the file.
        coordinated_groups: Per group: its planted answer's length, users, response and
            reaction event ids.
        labels: response_id -> label at window close (owner holds an accepted Love).
        expected_corrections: Late Loves that flip a landed 0 to 1.
        counts: Line, event and noise counts.
        malformed_lines: 1-based line numbers of malformed lines in the events file.
        duplicate_lines: 1-based line numbers of re-sent (duplicate) lines.
    """

    adversarial: dict[str, AdversaryKind]
    adversarial_rules: dict[str, list[str]]
    low_information_users: list[str]
    users: dict[str, UserRole]
    coordinated_groups: list[dict[str, Any]]
    labels: dict[str, int]
    expected_corrections: list[ExpectedCorrection]
    counts: dict[str, int]
    malformed_lines: list[int]
    duplicate_lines: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON layout written by :func:`write_simulation`."""
        return {
            "format": TRUTH_FORMAT,
            "meta": self.meta,
            "counts": self.counts,
            "adversarial": self.adversarial,
            "adversarial_rules": self.adversarial_rules,
            "low_information_users": self.low_information_users,
            "users": self.users,
            "coordinated_groups": self.coordinated_groups,
            "labels": self.labels,
            "expected_corrections": [
                {
                    "response_id": c.response_id,
                    "user_id": c.user_id,
                    "reaction_event_id": c.reaction_event_id,
                    "action": c.action,
                    "old_label": c.old_label,
                    "new_label": c.new_label,
                    "reaction_ts": c.reaction_ts,
                    "window_closed_at": c.window_closed_at,
                    "lateness_s": c.lateness_s,
                }
                for c in self.expected_corrections
            ],
            "malformed_lines": self.malformed_lines,
            "duplicate_lines": self.duplicate_lines,
        }


@dataclass(frozen=True, slots=True)
class Simulation:
    """Simulated JSONL lines (send order, no trailing newlines) and their ground truth."""

    lines: tuple[str, ...]
    truth: GroundTruth
    summary: dict[str, int | float | str]

    def stats(self) -> dict[str, int | float | str]:
        """Return headline numbers (counts, Love and label rates, adversaries) for printing."""
        return dict(self.summary)


def simulate(
    cfg: SimulationSettings, filters: FilterSettings, *, window_s: float, corpus: Corpus
) -> Simulation:
    """Generate the events and ground truth described by ``cfg``.

    Args:
        cfg: Traffic shape: users, responses, rates, adversaries, noise, span and seed.
        filters: The filter thresholds the traffic is built around (normal users stay well
            inside them, adversaries cross them).
        window_s: Attribution window per response, seconds of event time.
        corpus: Conversation text; see :func:`streams.sources.simulator.text_corpus.load_corpus`.

    Returns:
        The lines in producer send order and the ground truth; the same inputs give
        byte-identical output.

    Raises:
        ValueError: ``cfg.responses`` cannot hold the adversaries plus one response per
            normal user, the corpus is empty, or ``window_s`` is not positive.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    if not corpus.threads:
        raise ValueError("the corpus has no threads; pass load_corpus(None) for templates")
    return _finish(Traffic(cfg, filters, window_s, corpus).build())


def write_simulation(sim: Simulation, events_path: Path, truth_path: Path) -> None:
    """Write the events as JSONL (one line per message, send order) and the truth as JSON."""
    events_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with events_path.open("w", encoding="utf-8", newline="\n") as fh:
        for line in sim.lines:
            fh.write(line)
            fh.write("\n")
    truth_path.write_text(
        json.dumps(sim.truth.as_dict(), ensure_ascii=False, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    logger.info("wrote %d lines to %s and ground truth to %s", len(sim.lines), events_path, truth_path)


def _iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def _finish(b: Traffic) -> Simulation:
    """Check the rules, derive labels and corrections, serialise and add the noise."""
    flagged = tripped_rules(b.rule_events(), b.filters)
    live = [r for r in b.reactions if not r.dropped]
    honest_bad = [r.event_id for r in live if r.adversary is None and flagged[r.event_id]]
    if honest_bad:
        raise RuntimeError(f"{len(honest_bad)} honest reactions trip a filter rule (e.g. {honest_bad[0]})")
    adversarial: dict[str, AdversaryKind] = {r.event_id: r.adversary for r in live if r.adversary is not None}
    rules = {e: flagged[e] for e in adversarial}
    blind = sum(1 for e in adversarial if not rules[e])
    if blind:
        logger.warning("%d adversarial reactions trip no rule under these filter settings", blind)
    labels, corrections = _labels(b, live)
    lines, noise = serialise(b.rng, b.responses, live, duplicate_rate=b.cfg.duplicate_rate,
                             malformed_rate=b.cfg.malformed_rate, iso=_iso, new_event_id=b.event_id)
    n_love = sum(1 for r in live if r.role == "normal" and r.kind == "love" and r.action == "add")
    n_normal = sum(1 for r in b.responses if r.role == "normal")
    counts = {
        "lines": len(lines), "events": len(b.responses) + len(live), "responses": len(b.responses),
        "reactions": len(live), "duplicates": len(noise.duplicate_lines),
        "malformed": len(noise.malformed_lines), "unknown_field_events": noise.unknown_field_events,
        "adversarial_reactions": len(adversarial), "positive_labels": sum(labels.values()),
        "expected_corrections": len(corrections),
    }
    by_kind = {k: sum(1 for v in adversarial.values() if v == k) for k in ("bot", "coordinated", "troll")}
    ts_all = [r.ts for r in b.responses] + [r.ts for r in live]
    truth = GroundTruth(
        adversarial=adversarial,
        adversarial_rules=rules,
        low_information_users=sorted(b.low_info),
        users=dict(sorted(b.roles.items())),
        coordinated_groups=b.groups,
        labels=labels,
        expected_corrections=corrections,
        counts=counts,
        malformed_lines=noise.malformed_lines,
        duplicate_lines=noise.duplicate_lines,
        meta={
            "seed": b.cfg.seed, "start": b.cfg.start, "days": b.cfg.days, "window_s": b.window_ms / _S,
            "corpus": b.corpus.source, "simulation": b.cfg.model_dump(), "filters": b.filters.model_dump(),
            "first_event_ts": _iso(min(ts_all)), "last_event_ts": _iso(max(ts_all)),
        },
    )
    summary: dict[str, int | float | str] = {
        **counts,
        "users": len(b.roles),
        "normal_users": sum(1 for v in b.roles.values() if v == "normal"),
        "normal_responses": n_normal,
        "normal_loves": n_love,
        "normal_love_rate": round(n_love / n_normal, 5) if n_normal else 0.0,
        "unreacts": sum(1 for r in live if r.action == "remove"),
        "label_rate": round(sum(labels.values()) / len(labels), 5),
        **{f"adversarial_{k}": v for k, v in by_kind.items()},
        "bots": b.cfg.bots, "coordinated_accounts": b.cfg.coordinated_groups * b.cfg.group_size,
        "trolls": b.cfg.trolls, "low_information_users": len(b.low_info),
        "adversarial_undetectable": blind, "guard_dropped": b.guard_dropped,
        "corpus": b.corpus.source, "first_event_ts": _iso(min(ts_all)), "last_event_ts": _iso(max(ts_all)),
    }
    logger.info("simulated %d lines: %d responses, %d reactions (%d adversarial), %d malformed, %d duplicates",
                counts["lines"], counts["responses"], counts["reactions"], len(adversarial),
                counts["malformed"], counts["duplicates"])
    return Simulation(lines=tuple(lines), truth=truth, summary=summary)


def _labels(b: Traffic, live: list[SimReaction]) -> tuple[dict[str, int], list[ExpectedCorrection]]:
    """Label = the owner holds an accepted Love at window close; late Loves become corrections."""
    owner_loves: dict[str, list[SimReaction]] = {}
    for r in live:
        if r.kind == "love" and r.adversary is None and r.user_id == r.response.user_id:
            owner_loves.setdefault(r.response.response_id, []).append(r)
    labels: dict[str, int] = {}
    corrections: list[ExpectedCorrection] = []
    for resp in b.responses:
        close = resp.ts + b.window_ms
        held = False
        late: list[SimReaction] = []
        for r in sorted(owner_loves.get(resp.response_id, []), key=lambda x: x.ts):
            if abs(r.ts - close) < b.margin_ms:
                raise RuntimeError(f"reaction {r.event_id} lies within the margin of its window close")
            if r.ts < close:
                held = r.action == "add"
            else:
                late.append(r)
        labels[resp.response_id] = int(held)
        if not held and late and late[0].action == "add":
            corrections.append(ExpectedCorrection(
                response_id=resp.response_id, user_id=resp.user_id, reaction_event_id=late[0].event_id,
                reaction_ts=_iso(late[0].ts), window_closed_at=_iso(close),
                lateness_s=(late[0].ts - close) / _S,
            ))
    return labels, corrections
