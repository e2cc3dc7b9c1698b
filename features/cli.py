"""Commands of the data side: real-data import, the Delta lake, the feature store, backfill."""

from __future__ import annotations

from pathlib import Path

import typer

from rluf.errors import InputFileError
from rluf.settings import Settings

__all__ = ["register"]

_SOURCES = {
    "oasst": Path("oasst1-en-validation") / "en-validation.jsonl",
    "hh-rlhf": Path("hh-rlhf") / "harmless-base" / "test.jsonl.gz",
}


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or the working directory), when present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def import_data(
    source: str = typer.Argument(..., help="oasst or hh-rlhf"),
    path: Path | None = typer.Option(None, "--path", help="Input file (default: the copy in ../shared/data)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Events JSONL (default: <source>.events.jsonl)."),
    love_rate: float | None = typer.Option(
        None, "--love-rate", min=0.0, max=0.999, help="Sample positives down to this share of responses."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling and reaction delays."),
) -> None:
    """Turn real human-feedback data into wire events (then `rluf replay` or `rluf backfill` them)."""
    from features.importing import import_source

    if source not in _SOURCES:
        raise typer.BadParameter(f"source must be one of {', '.join(_SOURCES)}, got {source!r}")
    if path is None:
        data = shared_data_dir()
        if data is None:
            raise InputFileError(str(Path("../shared/data") / _SOURCES[source]), "no such file; pass --path")
        path = data / _SOURCES[source]
    target = out or Path(f"{source}.events.jsonl")
    result = import_source(source, path, target, love_rate=love_rate, seed=seed)  # type: ignore[arg-type]
    counts = ", ".join(f"{k} {v}" for k, v in result.counts().items())
    typer.echo(f"wrote {target}: {counts}")


def register(app: typer.Typer) -> None:
    """Attach the data-side commands to the root CLI."""
    app.command("import")(import_data)
