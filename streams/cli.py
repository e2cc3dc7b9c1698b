"""Commands of the streaming side: broker, topics, sources (simulate, import), replay, stream run/stats, backfill."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import typer

from rluf.errors import InputFileError
from rluf.settings import Settings

__all__ = ["register"]

_IMPORT_FILES = {  # each source `rluf import` knows: its file under ../shared/data
    "oasst": Path("oasst1-en-validation") / "en-validation.jsonl",
    "hh-rlhf": Path("hh-rlhf") / "harmless-base" / "test.jsonl.gz",
}


broker_app = typer.Typer(help="The embedded Kafka-protocol broker (local development and CI).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics rluf reads and writes.", no_args_is_help=True)
stream_app = typer.Typer(help="The stream worker: reactions to labeled triples in Delta.", no_args_is_help=True)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


# ---------------------------------------------------------------------------- broker


@broker_app.command("start")
def broker_start(ctx: typer.Context) -> None:
    """Start the embedded broker (Tansu) on 127.0.0.1 and create the topics."""
    from streams.broker_process import start_broker
    from streams.kafka_admin import ensure_topics

    s = _settings(ctx)
    info = start_broker(s.broker, s.data_home / "broker")
    created = ensure_topics(s.kafka.model_copy(update={"bootstrap_servers": f"{info.host}:{info.port}"}))
    typer.echo(f"broker running: pid {info.pid} at {info.host}:{info.port} ({s.broker.storage_url})")
    if created:
        typer.echo(f"created topics: {', '.join(created)}")


@broker_app.command("stop")
def broker_stop(ctx: typer.Context) -> None:
    """Stop the embedded broker (SIGTERM, then SIGKILL after the stop timeout)."""
    from streams.broker_process import stop_broker

    s = _settings(ctx)
    outcome = stop_broker(s.data_home / "broker", s.broker.stop_timeout_s)
    typer.echo({"stopped": "broker stopped", "killed": "broker killed (did not stop on SIGTERM)",
                "stale": "broker was not running (removed a stale pid file)",
                "not_running": "no broker was running"}[outcome])


@broker_app.command("status")
def broker_status_cmd(ctx: typer.Context) -> None:
    """Say whether the embedded broker runs and answers; exit 1 when it does not."""
    from streams.broker_process import broker_status

    s = _settings(ctx)
    status = broker_status(s.data_home / "broker")
    if status is None or not status.alive:
        typer.echo("broker: not running")
        raise typer.Exit(1)
    info = status.info
    typer.echo(f"broker: pid {info.pid} at {info.host}:{info.port}, "
               f"{'answering' if status.answering else 'NOT answering'}, up {status.uptime_s:.0f} s")
    if not status.running:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- topics


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create the responses, reactions and quarantine topics (and the worker's internal ones)."""
    from streams.faust_app import internal_topics
    from streams.kafka_admin import ensure_topics, wait_for_kafka

    s = _settings(ctx)
    wait_for_kafka(s.kafka, timeout_s=10.0)
    created = ensure_topics(s.kafka, internal_topics(s.kafka.consumer_group))
    typer.echo(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


# ---------------------------------------------------------------------------- replay / simulate / import


def replay(
    ctx: typer.Context,
    events: Path = typer.Argument(..., help="JSONL file of wire events (see docs/events.md)."),
    speedup: float | None = typer.Option(
        None, "--speedup", min=0.000001,
        help="Keep relative event timing, sped up X times (default: as fast as possible).",
    ),
) -> None:
    """Publish recorded events to Kafka, keyed by the conversation owner."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.kafka_admin import ensure_topics, wait_for_kafka
    from streams.kafka_producer import EventPublisher
    from streams.replay import replay_file

    s = _settings(ctx)
    if not events.is_file():
        raise InputFileError(str(events), "no such file")
    total = sum(1 for line in events.open("rb") if line.strip())
    wait_for_kafka(s.kafka, timeout_s=10.0)
    ensure_topics(s.kafka)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as progress, EventPublisher(s.kafka) as publisher:
        task = progress.add_task("replay", total=total)
        stats = replay_file(events, publisher, speedup=speedup,
                            on_progress=lambda n: progress.update(task, advance=n))
        progress.update(task, completed=stats.lines_read)
    per_topic = ", ".join(f"{t}={n}" for t, n in sorted(stats.published.items()))
    typer.echo(f"published {stats.total_published} events in {stats.seconds:.2f} s ({per_topic}; "
               f"{stats.unreadable} unreadable lines sent for quarantine)")


def simulate(
    ctx: typer.Context,
    out: Path = typer.Option(Path("events.jsonl"), "--out", "-o", help="Events JSONL to write."),
    truth: Path | None = typer.Option(None, "--truth", help="Ground-truth JSON (default: <out>.truth.json)."),
    responses: int | None = typer.Option(None, "--responses", min=1, help="Responses to generate."),
    users: int | None = typer.Option(None, "--users", min=1),
    love_rate: float | None = typer.Option(None, "--love-rate", min=0.0, max=1.0),
    seed: int | None = typer.Option(None, "--seed"),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Real text to draw on (default: ../shared/data when present)."),
) -> None:
    """Generate realistic traffic with bots, coordinated attackers and ground truth."""
    from rluf.shared_data import shared_data_dir
    from streams.sources.simulator.simulate import simulate as run_simulation
    from streams.sources.simulator.simulate import write_simulation
    from streams.sources.simulator.text_corpus import load_corpus

    s = _settings(ctx)
    overrides: dict[str, Any] = {k: v for k, v in
                                 {"responses": responses, "users": users, "love_rate": love_rate, "seed": seed}.items()
                                 if v is not None}
    cfg = s.simulation.model_copy(update=overrides)
    corpus = load_corpus(data_dir if data_dir is not None else shared_data_dir())
    started = time.perf_counter()
    sim = run_simulation(cfg, s.filters, window_s=s.stream.attribution_window_s, corpus=corpus)
    truth_path = truth or out.with_suffix(".truth.json")
    write_simulation(sim, out, truth_path)
    stats = sim.stats()
    typer.echo(f"wrote {out} and {truth_path} in {time.perf_counter() - started:.1f} s")
    for key, value in stats.items():
        typer.echo(f"  {key:<28} {value}")


def import_data(
    source: str = typer.Argument(..., help="oasst or hh-rlhf"),
    path: Path | None = typer.Option(None, "--path", help="Input file (default: the copy in ../shared/data)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Events JSONL (default: <source>.events.jsonl)."),
    love_rate: float | None = typer.Option(
        None, "--love-rate", min=0.0, max=0.999, help="Sample positives down to this share of responses."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and reaction delays."),
) -> None:
    """Turn real human-feedback data into wire events (then `rluf replay` or `rluf backfill` them)."""
    from rluf.shared_data import shared_data_dir
    from streams.sources.importers.catalog import import_source

    if source not in _IMPORT_FILES:
        raise typer.BadParameter(f"source must be one of {', '.join(_IMPORT_FILES)}, got {source!r}")
    if path is None:
        data = shared_data_dir()
        if data is None:
            raise InputFileError(str(Path("../shared/data") / _IMPORT_FILES[source]), "no such file; pass --path")
        path = data / _IMPORT_FILES[source]
    target = out or Path(f"{source}.events.jsonl")
    result = import_source(source, path, target, love_rate=love_rate, seed=seed)  # type: ignore[arg-type]
    counts = ", ".join(f"{k} {v}" for k, v in result.counts().items())
    typer.echo(f"wrote {target}: {counts}")


# ---------------------------------------------------------------------------- stream


@stream_app.command("run")
def stream_run(
    ctx: typer.Context,
    until_idle: float | None = typer.Option(
        None, "--until-idle", min=0.0, help="Exit once no event arrived for this many seconds."),
    flush: bool = typer.Option(False, "--flush", help="Close every open window before exiting."),
    driver: str | None = typer.Option(None, "--driver", help="faust (default) or batch."),
) -> None:
    """Run the worker: join reactions to responses, label, filter, land in Delta."""
    from streams.worker import run_stream

    s = _settings(ctx)
    if driver not in (None, "faust", "batch"):
        raise typer.BadParameter(f"--driver must be faust or batch, got {driver!r}")
    chosen: Literal["faust", "batch"] | None = driver  # type: ignore[assignment]
    started = time.perf_counter()

    def progress(snap: dict[str, object]) -> None:
        elapsed = max(1e-9, time.perf_counter() - started)
        events = int(snap.get("events_in", 0))  # type: ignore[call-overload]
        typer.echo(
            f"[{elapsed:7.1f}s] events {events:>9,} ({events / elapsed:,.0f}/s)  triples {snap.get('triples_out')}"
            f"  corrections {snap.get('corrections_out')}  quarantined {snap.get('quarantined_total')}"
            f"  open {snap.get('open_windows')}  lag {snap.get('consumer_lag_total')}", err=True)

    outcome = run_stream(s, driver=chosen, until_idle_s=until_idle, flush=flush, on_progress=progress)
    typer.echo(f"stream worker stopped ({outcome.reason}): {outcome.events_in} events in, "
               f"{outcome.triples_out} triples out, {outcome.rebalances} rebalances")


@stream_app.command("stats")
def stream_stats(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Events in, triples out, quarantined by reason, open windows, consumer lag."""
    from streams.metrics import read_metrics
    from streams.worker import metrics_path, worker_metrics

    s = _settings(ctx)
    path = metrics_path(s)
    snap = read_metrics(path)
    if snap is None:
        typer.echo(f"no stream worker has written metrics to {path} yet; run `rluf stream run`")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(snap, indent=2, sort_keys=True))
        return
    age = time.time() - float(snap["updated_at"])
    live = worker_metrics(s)
    typer.echo(f"stream worker ({snap.get('driver')}), snapshot {age:.0f} s old, uptime {snap['uptime_s']} s, "
               f"shards {snap.get('shards')}; {len(live)} worker(s) of the group reported in the last minute")
    rows = [
        ("events in", snap["events_in"]), ("responses", snap["responses"]), ("reactions", snap["reactions"]),
        ("triples out", snap["triples_out"]), ("label corrections", snap["corrections_out"]),
        ("down-weighted triples", snap["downweighted"]), ("quarantined", snap["quarantined_total"]),
        ("open windows", snap["open_windows"]), ("held orphan reactions", snap["held_orphans"]),
        ("consumer lag", snap["consumer_lag_total"]), ("close→landed p50 s", snap["close_to_landed_p50_s"]),
        ("close→landed p99 s", snap["close_to_landed_p99_s"]),
    ]
    for name, value in rows:
        typer.echo(f"  {name:<24} {value}")
    for reason, count in sorted(dict(snap["quarantined"]).items()):
        typer.echo(f"    quarantined {reason:<20} {count}")


def backfill(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="Events as JSONL or parquet (local path, s3:// or gs://)."),
    runner: str = typer.Option("DirectRunner", "--runner", help="Beam runner: DirectRunner, FlinkRunner, ..."),
) -> None:
    """Run the same attribution code as the stream worker over a file, on Apache Beam.

    Options rluf does not know (e.g. --flink_master=host:8081) go to Beam unchanged.
    """
    from streams.backfill.pipeline import run_backfill

    s = _settings(ctx)
    started = time.perf_counter()

    def progress(snap: dict[str, object]) -> None:
        typer.echo(f"[{time.perf_counter() - started:7.1f}s] lines {snap.get('lines')}  events {snap.get('events_in')}"
                   f"  triples {snap.get('triples_out')}  corrections {snap.get('corrections_out')}"
                   f"  quarantined {snap.get('quarantined_total')}", err=True)

    result = run_backfill(s, source, runner=runner, pipeline_args=list(ctx.args), on_progress=progress)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result.quarantined.items())) or "none"
    typer.echo(f"backfill of {result.source} on {result.runner}: {result.lines} lines, {result.triples} triples, "
               f"{result.corrections} corrections, quarantined {result.quarantined_total} ({reasons}) "
               f"in {result.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    """Attach the streaming commands to the root CLI."""
    app.add_typer(broker_app, name="broker")
    app.add_typer(topics_app, name="topics")
    app.add_typer(stream_app, name="stream")
    app.command("replay")(replay)
    app.command("simulate")(simulate)
    app.command("backfill", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(backfill)
    app.command("import")(import_data)
