"""Traffic for `rluf simulate`: users, conversations, reactions, and the guards that keep honest users honest.

Used by ``simulate`` only. Times are integer milliseconds since the epoch so that every
comparison against a filter threshold or a window boundary is exact. Actors (normal users,
bots, coordinated groups, trolls, constant Lovers) append to ``responses`` and ``reactions``;
the guards then drop the rare honest reaction that chance put near a rule, so that the ground
truth needs no "probably".

Why one module of ~470 lines: every actor and every guard works on the one ``Traffic`` state
(users, responses, reactions, the random stream); the guards are only correct next to the
actors whose reactions they keep clear of the rules.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rluf.settings import FilterSettings, SimulationSettings
from streams.sources.simulator.reference_rules import RuleEvent, reading_time_ms, tripped_rules
from streams.sources.simulator.text_corpus import Corpus, Exchange, Turn

__all__ = ["AdversaryKind", "UserRole", "SimResponse", "SimReaction", "Traffic", "MS_PER_S"]

AdversaryKind = Literal["bot", "coordinated", "troll"]
UserRole = Literal["normal", "bot", "coordinated", "troll", "constant_lover"]

MS_PER_S = 1000
_S = MS_PER_S
_MIN = 60 * _S
_H = 60 * _MIN
_DAY = 24 * _H
_POSITIVE = ("thumbs_up", "like", "laugh", "wow")
_NEGATIVE = ("thumbs_down", "angry", "sad")
_TROLL_KINDS = ("love", "angry", "thumbs_down")
_TROLL_WEIGHTS = (0.4, 0.35, 0.25)


@dataclass(slots=True)
class SimResponse:
    """One simulated answer; ``ts`` in epoch milliseconds."""

    response_id: str
    event_id: str
    conversation_id: str
    user_id: str
    role: UserRole
    ts: int
    context: tuple[Turn, ...]
    answer: str
    quality: float
    policy: str


@dataclass(slots=True)
class SimReaction:
    """One simulated reaction; ``adversary`` is set for reactions a filter must quarantine."""

    event_id: str
    response: SimResponse
    user_id: str
    role: UserRole
    kind: str
    action: Literal["add", "remove"]
    ts: int
    adversary: AdversaryKind | None = None
    removal: SimReaction | None = None  # the later "remove" of this Love, if any
    dropped: bool = False


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integer shares >= 1 proportional to ``weights`` (largest remainder)."""
    rest = total - len(weights)
    scale = rest / sum(weights)
    raw = [w * scale for w in weights]
    shares = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (shares[i] - raw[i], i))
    for i in order[: rest - sum(shares)]:
        shares[i] += 1
    return [s + 1 for s in shares]


class Traffic:
    """One simulation run's state; each actor and guard is a short method on it."""

    def __init__(self, cfg: SimulationSettings, filters: FilterSettings, window_s: float,
                 corpus: Corpus) -> None:
        self.cfg, self.filters, self.corpus = cfg, filters, corpus
        self.rng = random.Random(cfg.seed)
        self.window_ms = round(window_s * _S)
        # honest reactions stay this far from a window close, late Loves this far past it
        self.margin_ms = min(10 * _MIN, self.window_ms // 10)
        start = datetime.fromisoformat(cfg.start)
        if start.tzinfo is None:
            raise ValueError(f"simulation.start must carry a UTC offset, got {cfg.start!r}")
        self.start_ms = round(start.timestamp() * _S)
        self.end_ms = self.start_ms + round(cfg.days * _DAY)
        self.responses: list[SimResponse] = []
        self.reactions: list[SimReaction] = []
        self.roles: dict[str, UserRole] = {}
        self.groups: list[dict[str, Any]] = []
        self.low_info: list[str] = []
        self.guard_dropped = 0
        self._seen_ids: set[str] = set()

    # ---- ids and times ----------------------------------------------------------------
    def _id(self, prefix: str, bits: int) -> str:
        while True:
            new = f"{prefix}{self.rng.getrandbits(bits):0{bits // 4}x}"
            if new not in self._seen_ids:
                self._seen_ids.add(new)
                return new

    def event_id(self) -> str:
        """A fresh UUID-4-shaped event id drawn from the run's generator."""
        h = self._id("", 128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"

    def _user(self, role: UserRole) -> str:
        uid = self._id("user-", 40)
        self.roles[uid] = role
        return uid

    def _thr(self, text: str) -> int:
        return math.ceil(reading_time_ms(text, self.filters))

    def _human_delay(self, resp: SimResponse, *, median_s: float = 30.0) -> int | None:
        """A reading delay >= 3x the too-fast threshold that ends well inside the window."""
        floor = 3 * self._thr(resp.answer) + _S
        cap = self.window_ms - 2 * self.margin_ms
        if floor > cap:
            return None
        if self.rng.random() < 0.85:
            d = self.rng.lognormvariate(math.log(median_s * _S), 1.0)
        else:  # came back to the chat later
            d = math.exp(self.rng.uniform(math.log(10 * _MIN), math.log(18 * _H)))
        d = max(d, floor + self.rng.uniform(0, 5 * _S))
        return int(min(d, cap))

    def _diurnal_offset(self, lo: int, span: int) -> int:
        """An offset in [0, span] drawn with more traffic in the (UTC) evening."""
        if span <= 0:
            return 0
        while True:
            u = self.rng.randrange(span + 1)
            hour = ((lo + u) % _DAY) / _H
            if self.rng.random() * 1.6 <= 1 + 0.6 * math.cos(2 * math.pi * (hour - 19) / 24):
                return u

    def _place(self, durations: list[int], lo: int, hi: int, gap: int, *, diurnal: bool) -> list[int]:
        """Start times for non-overlapping intervals in [lo, hi], in order, ``gap`` apart."""
        slack = max(0, hi - lo - sum(durations) - gap * len(durations))
        if diurnal:
            offsets = sorted(self._diurnal_offset(lo, slack) for _ in durations)
        else:
            offsets = sorted(self.rng.randrange(slack + 1) for _ in durations)
        starts, used = [], 0
        for off, dur in zip(offsets, durations, strict=True):
            starts.append(lo + off + used)
            used += dur + gap
        return starts

    # ---- conversations ----------------------------------------------------------------
    def _conversations(self, uid: str, role: UserRole, count: int, *, min_gap_s: float = 8.0,
                       median_gap_s: float = 40.0) -> list[SimResponse]:
        """Place ``count`` answers in non-overlapping conversations over the simulated span."""
        convs: list[tuple[Exchange, ...]] = []
        left = count
        while left > 0:
            thread = self.corpus.pick(self.rng)
            take = min(len(thread), self.rng.choice((1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 8)), left)
            convs.append(thread[:take])
            left -= take
        gaps = [
            [0] + [int(max(min_gap_s * _S, self.rng.lognormvariate(math.log(median_gap_s * _S), 0.8)))
                   for _ in conv[1:]]
            for conv in convs
        ]
        between, span = _MIN, self.end_ms - self.start_ms
        busy = sum(map(sum, gaps)) + between * len(convs)
        if busy > 0.9 * span:  # a very heavy user: squeeze the pauses, keep >= 1 s
            squeeze = 0.9 * span / busy
            gaps = [[max(_S, int(x * squeeze)) if i else 0 for i, x in enumerate(g)] for g in gaps]
            between = max(_S, int(between * squeeze))
        starts = self._place([sum(g) for g in gaps], self.start_ms, self.end_ms, between, diurnal=True)
        half = self.start_ms + span // 2
        out: list[SimResponse] = []
        for conv, gap, t in zip(convs, gaps, starts, strict=True):
            cid = self._id("conv-", 48)
            policy = "policy-v2" if t >= half and self.rng.random() < 0.5 else "policy-v1"
            for ex, g in zip(conv, gap, strict=True):
                t += g
                out.append(self._response(uid, role, cid, t, ex.context, ex.answer, ex.quality, policy))
        return out

    def _response(self, uid: str, role: UserRole, cid: str, ts: int, context: tuple[Turn, ...],
                  answer: str, quality: float, policy: str = "policy-v1") -> SimResponse:
        resp = SimResponse(self._id("resp-", 64), self.event_id(), cid, uid, role, ts, context, answer,
                         quality, policy)
        self.responses.append(resp)
        return resp

    def _react(self, resp: SimResponse, uid: str, role: UserRole, kind: str, ts: int,
               adversary: AdversaryKind | None = None,
               action: Literal["add", "remove"] = "add") -> SimReaction:
        r = SimReaction(self.event_id(), resp, uid, role, kind, action, ts, adversary)
        self.reactions.append(r)
        return r

    # ---- actors -------------------------------------------------------------------------
    def _bots(self) -> None:
        """Bots Love their own answers faster than anyone can read them, in bursts.

        Every bot reaction comes before 0.9x the reading time, so the too-fast rule alone
        catches all of them. Each burst also holds more reactions than the token bucket, and
        even-numbered bots put more than the daily cap into one UTC day.
        """
        cap = math.ceil(self.filters.rate_capacity)
        for b in range(self.cfg.bots):
            uid = self._user("bot")
            sizes: list[int] = []
            if b % 2 == 0:  # heavy: love + two more kinds per answer, over the daily cap in one day
                per, total = 3, math.ceil((self.filters.daily_cap + self.rng.randint(10, 30)) / 3)
                while sum(sizes) < total:
                    sizes.append(min(total - sum(sizes), self.rng.randint(10, 16)))
                lo, hi = self._one_utc_day()
            else:  # light: a few bursts over the bucket, love plus sometimes one more kind
                per = 0
                sizes = [cap + self.rng.randint(3, 10) for _ in range(self.rng.randint(2, 3))]
                lo, hi = self.start_ms, self.end_ms
            steps = [[self.rng.randint(1500, 6000) for _ in range(n)] for n in sizes]
            starts = self._place([sum(s) for s in steps], lo + 10 * _MIN, hi - 10 * _MIN, 10 * _MIN,
                                 diurnal=False)
            for t, step in zip(starts, steps, strict=True):
                cid = self._id("conv-", 48)
                for s in step:
                    t += s
                    ex = self.corpus.pick(self.rng)[0]
                    resp = self._response(uid, "bot", cid, t, ex.context, ex.answer, ex.quality)
                    self._bot_reactions(resp, uid, per or self.rng.choice((1, 1, 2)))

    def _bot_reactions(self, resp: SimResponse, uid: str, n: int) -> None:
        thr = self._thr(resp.answer)
        for kind in ("love", *self.rng.sample(("thumbs_up", "like", "wow"), n - 1)):
            self._react(resp, uid, "bot", kind, resp.ts + max(1, int(self.rng.uniform(0.05, 0.9) * thr)), "bot")

    def _one_utc_day(self) -> tuple[int, int]:
        """A UTC day (clipped to the span) among those with the most simulated time."""
        days: list[tuple[int, int]] = []
        day = self.start_ms - self.start_ms % _DAY
        while day < self.end_ms:
            days.append((max(day, self.start_ms), min(day + _DAY, self.end_ms)))
            day += _DAY
        longest = max(hi - lo for lo, hi in days)
        return self.rng.choice([d for d in days if d[1] - d[0] == longest])

    def _coordinated(self) -> None:
        """Groups whose accounts all got one planted answer and Love it within a few seconds.

        Reading delays are human (>= 3x the reading time) and each account reacts once, so
        only the coordination rule can catch them.
        """
        spread = int(min(8 * _S, 0.4 * self.filters.burst_window_s * _S))
        span = self.end_ms - self.start_ms
        for g in range(self.cfg.coordinated_groups):
            answer, questions = _planted_answer(self.rng, g)
            t_burst = self.start_ms + int(self.rng.uniform(0.1, 0.9) * span)
            thr = self._thr(answer)
            group: dict[str, Any] = {"answer_chars": len(answer), "users": [], "response_ids": [],
                                     "reaction_event_ids": []}
            for _ in range(self.cfg.group_size):
                uid = self._user("coordinated")
                love_ts = t_burst + self.rng.randrange(spread + 1)
                read = 3 * thr + _S + self.rng.randrange(5 * _S, 90 * _S)
                context = (Turn("user", self.rng.choice(questions)),)
                resp = self._response(uid, "coordinated", self._id("conv-", 48), love_ts - read, context,
                                      answer, 0.05)
                love = self._react(resp, uid, "coordinated", "love", love_ts, "coordinated")
                group["users"].append(uid)
                group["response_ids"].append(resp.response_id)
                group["reaction_event_ids"].append(love.event_id)
                self._conversations(uid, "coordinated", self.rng.choice((0, 0, 1, 2)))
            self.groups.append(group)

    def _constant_lovers(self) -> None:
        """Users who Love (nearly) every answer they get, at human speed and a low rate.

        The few answers they skip all come after the first ``2 * low_info_min_events``, so
        their running Love rate never dips near ``low_info_love_rate``.
        """
        lr, n_min = self.filters.low_info_love_rate, self.filters.low_info_min_events
        for _ in range(self.cfg.constant_lovers):
            uid = self._user("constant_lover")
            self.low_info.append(uid)
            n = 2 * n_min + self.rng.randint(5, 20)
            own = sorted(self._conversations(uid, "constant_lover", n, min_gap_s=45.0, median_gap_s=120.0),
                         key=lambda r: r.ts)
            skip = set(self.rng.sample(range(2 * n_min, n), min(n - 2 * n_min, math.floor(n * (1 - lr) * 0.4))))
            for i, resp in enumerate(own):
                delay = self._human_delay(resp, median_s=20.0)
                if i not in skip and delay is not None:
                    self._react(resp, uid, "constant_lover", "love", resp.ts + min(delay, 30 * _MIN))

    def _normal_users(self, budget: int) -> list[SimResponse]:
        weights = [self.rng.lognormvariate(0, 0.9) for _ in range(self.cfg.users)]
        made: list[SimResponse] = []
        for count in _apportion(budget, weights):
            made.extend(self._conversations(self._user("normal"), "normal", count))
        return made

    def _normal_reactions(self, made: list[SimResponse]) -> None:
        """Owners Love with probability ~``love_rate``, scaled by their taste and the answer's quality.

        Both factors are normalised to mean 1 over the normal answers, so the expected Love
        rate is ``love_rate``. A Love is late (after the window closes) with ``late_love_rate``,
        otherwise removed later inside the window with ``unreact_rate``.
        """
        cfg = self.cfg
        taste: dict[str, float] = {}
        for r in made:
            if r.user_id not in taste:
                taste[r.user_id] = self.rng.lognormvariate(0, 0.6)
        mean_taste = sum(taste[r.user_id] for r in made) / len(made)
        w = [0.3 + 1.4 * r.quality for r in made]
        mean_w = sum(w) / len(w)
        p_cap = min(0.5, 0.4 * self.filters.low_info_love_rate)
        late_span = min(3 * _H, self.window_ms)
        for r, wq in zip(made, w, strict=True):
            close = r.ts + self.window_ms
            if self.rng.random() < min(p_cap, cfg.love_rate * taste[r.user_id] / mean_taste * wq / mean_w):
                fate = self.rng.random()
                delay = self._human_delay(r)
                if fate < cfg.late_love_rate:
                    self._react(r, r.user_id, "normal", "love", close + self.margin_ms + self.rng.randrange(late_span))
                elif delay is not None:
                    love = self._react(r, r.user_id, "normal", "love", r.ts + delay)
                    if fate < cfg.late_love_rate + cfg.unreact_rate:
                        undo = int(self.rng.lognormvariate(math.log(90 * _S), 1.2)) + 2 * _S
                        love.removal = self._react(r, r.user_id, "normal", "love",
                                                   min(love.ts + undo, close - self.margin_ms), action="remove")
            if self.rng.random() < cfg.other_reaction_rate:
                delay = self._human_delay(r)
                if delay is not None:
                    pool = _POSITIVE if self.rng.random() < r.quality else _NEGATIVE
                    self._react(r, r.user_id, "normal", self.rng.choice(pool), r.ts + delay)

    def _troll_reactions(self, trolls: list[str], made: list[SimResponse]) -> None:
        """Trolls react to other users' answers (Love, angry, thumbs_down) at human speed."""
        for uid in trolls:
            for target in self.rng.sample(made, min(len(made), self.rng.randint(12, 30))):
                delay = self._human_delay(target, median_s=120.0)
                if delay is not None:
                    kind = self.rng.choices(_TROLL_KINDS, _TROLL_WEIGHTS)[0]
                    self._react(target, uid, "troll", kind, target.ts + delay, "troll")

    # ---- guards -------------------------------------------------------------------------
    def _drop(self, r: SimReaction) -> None:
        if not r.dropped:
            r.dropped = True
            self.guard_dropped += 1
        if r.removal is not None:
            self._drop(r.removal)

    def _guard_rate(self) -> None:
        """Keep honest users' token bucket at least half full and under half the daily cap."""
        f = self.filters
        per_user: dict[str, list[SimReaction]] = {}
        for r in self.reactions:
            if r.adversary is None:
                per_user.setdefault(r.user_id, []).append(r)
        day_cap, floor = max(1, f.daily_cap // 2), max(1.0, f.rate_capacity / 2)
        for rs in per_user.values():
            tokens, last = f.rate_capacity, None
            days: dict[int, int] = {}
            for r in sorted(rs, key=lambda r: (r.ts, r.event_id)):
                if r.dropped:
                    continue
                if last is not None:
                    tokens = min(f.rate_capacity, tokens + (r.ts - last) / _S * f.rate_per_s)
                last = r.ts
                if tokens < floor or days.get(r.ts // _DAY, 0) >= day_cap:
                    self._drop(r)
                    continue
                tokens -= 1
                days[r.ts // _DAY] = days.get(r.ts // _DAY, 0) + 1

    def _guard_low_info(self) -> None:
        """Keep each normal user's running Love rate under half the low-information threshold."""
        limit, judge_from = 0.5 * self.filters.low_info_love_rate, max(1, self.filters.low_info_min_events // 2)
        loves: dict[str, list[SimReaction]] = {}
        for r in self.reactions:
            if r.role == "normal" and r.kind == "love" and r.action == "add" and not r.dropped:
                loves.setdefault(r.response.response_id, []).append(r)
        tally: dict[str, list[int]] = {}  # user -> [answers so far, answers Loved so far]
        for resp in sorted(self.responses, key=lambda x: (x.ts, x.response_id)):
            if resp.role != "normal":
                continue
            seen = tally.setdefault(resp.user_id, [0, 0])
            seen[0] += 1
            mine = loves.get(resp.response_id, [])
            if not mine:
                continue
            if seen[0] >= judge_from and (seen[1] + 1) / seen[0] >= limit:
                for r in mine:
                    self._drop(r)
            else:
                seen[1] += 1

    def rule_events(self) -> list[RuleEvent]:
        """The live reactions as the reference rule check sees them."""
        return [
            RuleEvent(r.event_id, r.user_id, r.response.user_id, r.kind, r.action, r.ts, r.response.ts,
                      r.response.answer)
            for r in self.reactions
            if not r.dropped
        ]

    def _guard_coordination(self) -> None:
        """Drop honest Loves that would, by chance, join a burst on a reused answer text."""
        honest = {r.event_id: r for r in self.reactions if r.adversary is None}
        for _ in range(10):
            flagged = tripped_rules(self.rule_events(), self.filters)
            hit = [honest[e] for e, rules in flagged.items() if e in honest and "coordinated" in rules]
            if not hit:
                return
            for r in hit:
                self._drop(r)
        raise RuntimeError("honest Loves keep forming bursts; lower simulation.love_rate")

    def build(self) -> Traffic:
        """Run every actor, then the guards; return ``self`` for the truth to be read off."""
        cfg = self.cfg
        self._bots()
        self._coordinated()
        self._constant_lovers()
        trolls = [self._user("troll") for _ in range(cfg.trolls)]
        for uid in trolls:
            self._conversations(uid, "troll", self.rng.randint(2, 4))
        budget = cfg.responses - len(self.responses)
        if budget < cfg.users:
            raise ValueError(
                f"simulation.responses={cfg.responses} leaves {budget} answers for {cfg.users} normal "
                f"users after the adversaries' {len(self.responses)}; raise simulation.responses"
            )
        made = self._normal_users(budget)
        self._normal_reactions(made)
        self._troll_reactions(trolls, made)
        self._guard_rate()
        self._guard_low_info()
        self._guard_coordination()
        return self


def _planted_answer(rng: random.Random, group: int) -> tuple[str, tuple[str, ...]]:
    """A promotional answer unique to ``group`` and the questions its accounts asked."""
    syll = ("zen", "vor", "qua", "lix", "tro", "nex", "pal", "kor", "vy", "mo")
    brand = "".join(rng.choice(syll) for _ in range(3)).capitalize() + rng.choice(("VPN", "Boost", "Pro", "X"))
    code = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    answer = (
        f"Honestly, the best option right now is **{brand}**. I've compared all the alternatives and "
        f"nothing comes close: faster, cheaper and recommended by experts. Use code {code} at "
        f"https://{brand.lower()}.example/deal-{group} for 40% off, today only! ⭐⭐⭐⭐⭐"
    )
    questions = (
        "Which VPN should I use?", "What's the best app for this?", "can you recommend something good?",
        "What do you recommend to boost my energy?", "Any product you'd suggest?",
    )
    return answer, questions
