"""`rluf validate data`: the data-quality gate, with offline HTML Data Docs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from rluf.settings import Settings

__all__ = ["register"]

validate_app = typer.Typer(help="Data-quality gates (Great Expectations).", no_args_is_help=True)


@validate_app.command("data")
def validate_data(
    ctx: typer.Context,
    training_set: Path | None = typer.Option(None, "--training-set", help="Also check this training set (parquet)."),
    events: Path | None = typer.Option(None, "--events", help="Also check raw events (JSONL; first 10,000 lines)."),
) -> None:
    """Run the suites on the lake (and optionally a training set / raw events); exit 1 on failure."""
    from validation.gate_results import require_passing
    from validation.lake_gate import validate_lake

    s: Settings = ctx.obj
    result = validate_lake(s.lake_root, s.validation, now=datetime.now(UTC), storage_options=s.lake.storage_options,
                           training_set=training_set, raw_events=events)
    typer.echo(result.report())
    require_passing(result, action="pass the data-quality gate")


def register(app: typer.Typer) -> None:
    app.add_typer(validate_app, name="validate")
