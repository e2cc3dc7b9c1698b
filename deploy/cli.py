"""Commands of the model side: registry, retrain, scheduler, scoring."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from deploy.gateway.cli import register as register_gateway
from rluf.errors import InputFileError
from rluf.settings import Settings

__all__ = ["register"]

models_app = typer.Typer(help="The P[Love] model registry (MLflow).", no_args_is_help=True)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _registry(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from deploy.registry import ModelRegistry

    s = _settings(ctx)
    return ModelRegistry(s.registry, s.data_home)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """Every registered version, newest first, with its key metrics and status."""
    versions = _registry(ctx).list()
    if not versions:
        typer.echo("no models registered yet; run `rluf retrain`")
        return
    typer.echo(f"{'version':>7}  {'created':<19}  {'auroc':>6}  {'ece':>6}  {'triples':>7}  status")
    for v in versions:
        created = datetime.fromtimestamp(v.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "PRODUCTION" if v.is_production else v.tags.get("rluf.status", "")
        typer.echo(f"{v.version:>7}  {created:<19}  {_fmt(v.metrics.get('auroc', '-')):>6}  "
                   f"{_fmt(v.metrics.get('ece', '-')):>6}  {v.tags.get('rluf.triples_version', '-'):>7}  {status}")


@models_app.command("show")
def models_show(ctx: typer.Context, ref: str = typer.Argument("production", help="Version, production or latest.")
                ) -> None:
    """Everything recorded about one version (metrics, data lineage, config, decision)."""
    info = _registry(ctx).resolve(ref)
    typer.echo(json.dumps(info.as_dict(), indent=2, sort_keys=True, default=str))


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: int = typer.Argument(..., help="Version to serve."),
                   reason: str = typer.Option("manual", "--reason")) -> None:
    """Point production at a version (the previous one is remembered for rollback)."""
    info = _registry(ctx).promote(version, reason=reason)
    typer.echo(f"production -> version {info.version}")


@models_app.command("rollback")
def models_rollback(ctx: typer.Context) -> None:
    """Point production back at the version it had before the last promotion."""
    info = _registry(ctx).rollback()
    typer.echo(f"production rolled back to version {info.version}")


def retrain_cmd(
    ctx: typer.Context,
    if_needed: bool = typer.Option(False, "--if-needed", help="Only when enough new triples landed (or too old)."),
) -> None:
    """Gate, build a training set, train with DeepSpeed, evaluate, register; promote only if better."""
    from deploy.retrain import retrain

    outcome = retrain(_settings(ctx), if_needed=if_needed, echo=typer.echo)
    typer.echo(outcome.summary())
    if outcome.model_card:
        typer.echo(f"model card: {outcome.model_card}")
    if outcome.status in ("gate_failed", "failed"):
        raise typer.Exit(1)


def scheduler_cmd(
    ctx: typer.Context,
    interval: float = typer.Option(None, "--interval", min=1.0, help="Seconds between cycles (default: settings)."),
    cycles: int | None = typer.Option(None, "--cycles", min=1, help="Stop after this many cycles."),
) -> None:
    """Run `retrain --if-needed` on an interval, logging each cycle's outcome."""
    from deploy.retrain import run_scheduler

    s = _settings(ctx)
    run_scheduler(s, interval_s=interval or s.retrain.interval_s, echo=typer.echo, max_cycles=cycles)


def score_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="JSONL lines with context and response (responses or triples)."),
    model: str = typer.Option("production", "--model", help="Version number, production, latest or a directory."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write JSONL here (default: stdout)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
) -> None:
    """Score (context, response) lines with P[Love]; adds a `p_love` field to each line."""
    from pydantic import TypeAdapter, ValidationError

    from deploy.registry import is_model_ref
    from rluf.schemas import Message, first_error
    from training.plove_scorer import PLove

    if not file.is_file():
        raise InputFileError(str(file), "no such file")
    rows, contexts, responses = [], [], []
    context_adapter = TypeAdapter(list[Message])
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ctx_msgs = context_adapter.validate_python(row.get("context", []))
        except json.JSONDecodeError as exc:
            raise InputFileError(str(file), f"not valid JSON: {exc.msg}", line=n) from exc
        except ValidationError as exc:
            raise InputFileError(str(file), first_error(exc), line=n) from exc
        if not isinstance(row.get("response"), str):
            raise InputFileError(str(file), "response: field required (a string)", line=n)
        rows.append(row)
        contexts.append([m.model_dump() for m in ctx_msgs])
        responses.append(row["response"])
    scorer = _registry(ctx).load_plove(model) if is_model_ref(model) else PLove.load(Path(model))
    scores = scorer.score(contexts, responses, batch_size=batch_size)
    sink = out.open("w") if out else sys.stdout
    try:
        for row, p in zip(rows, scores, strict=True):
            sink.write(json.dumps({**row, "p_love": round(float(p), 6)}, ensure_ascii=False) + "\n")
    finally:
        if out:
            sink.close()
    if out:
        typer.echo(f"scored {len(rows)} lines with model {model} -> {out}")


def register(app: typer.Typer) -> None:
    """Attach the model-side commands to the root CLI."""
    app.add_typer(models_app, name="models")
    app.command("retrain")(retrain_cmd)
    app.command("scheduler")(scheduler_cmd)
    app.command("score")(score_cmd)
    register_gateway(app)
