"""Commands of the data side: the Delta lake, the feature store and training sets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import typer

from rluf.settings import Settings

__all__ = ["register"]


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


lake_app = typer.Typer(help="Delta tables: compaction, vacuum, history.", no_args_is_help=True)


@lake_app.command("optimize")
def lake_optimize(
    ctx: typer.Context,
    table: list[str] = typer.Option([], "--table", "-t", help="Table(s); default: all."),
) -> None:
    """Compact the small files the stream worker writes into large ones."""
    from features.lake.admin import optimize_tables

    s = _settings(ctx)
    for r in optimize_tables(s.lake_root, table or None, storage_options=s.lake.storage_options):
        typer.echo(f"{r.table:<18} v{r.version_before} -> v{r.version_after}: "
                   f"{r.files_removed} files compacted into {r.files_added}")


@lake_app.command("vacuum")
def lake_vacuum(
    ctx: typer.Context,
    retention_hours: float = typer.Option(168.0, "--retention-hours", min=0.0,
                                          help="Keep files needed by versions this recent (time travel)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted."),
    table: list[str] = typer.Option([], "--table", "-t", help="Table(s); default: all."),
) -> None:
    """Delete files no version within the retention period needs."""
    from features.lake.admin import vacuum_tables

    s = _settings(ctx)
    for r in vacuum_tables(s.lake_root, table or None, retention_hours=retention_hours, dry_run=dry_run,
                           storage_options=s.lake.storage_options):
        typer.echo(f"{r.table:<18} {r.files_removed} files {'would be ' if dry_run else ''}deleted")


@lake_app.command("history")
def lake_history_cmd(
    ctx: typer.Context,
    table: str = typer.Argument("triples", help="triples, label_corrections or quarantine"),
    limit: int = typer.Option(20, "--limit", min=1),
) -> None:
    """Every commit of a table: version, time, operation, rows, recorded resume positions."""
    from datetime import UTC, datetime

    from features.lake.admin import LAKE_TABLES, lake_history

    if table not in LAKE_TABLES:
        raise typer.BadParameter(f"table must be one of {', '.join(LAKE_TABLES)}, got {table!r}")
    s = _settings(ctx)
    for row in lake_history(s.lake_root, table, limit=limit, storage_options=s.lake.storage_options):
        when = datetime.fromtimestamp((row["timestamp_ms"] or 0) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        ckpt = ""
        if row["checkpoint"]:
            ckpt = "  checkpoint " + " ".join(f"{t}:{p}={o}" for t, p, o in row["checkpoint"])
        typer.echo(f"v{row['version']:<5} {when}  {row['operation']:<8} rows {row['rows_added']}{ckpt}")


features_app = typer.Typer(help="The Feast feature repository over the Delta tables.", no_args_is_help=True)


@features_app.command("apply")
def features_apply(
    ctx: typer.Context,
    offline: str = typer.Option("duckdb", "--offline", help="duckdb (default) or spark (needs the [spark] extra)."),
) -> None:
    """Generate the feature repo (entities, views, push source) and register it with Feast."""
    from features.store.repository import apply_repo

    if offline not in ("duckdb", "spark"):
        raise typer.BadParameter(f"--offline must be duckdb or spark, got {offline!r}")
    summary = apply_repo(_settings(ctx), offline=offline)  # type: ignore[arg-type]
    typer.echo(f"feature repo {summary.repo_dir} (project {summary.project}, online store {summary.online_store})")
    for view, feats in summary.feature_views.items():
        typer.echo(f"  view {view}: {', '.join(feats)}")
    typer.echo(f"  entities: {', '.join(summary.entities)}; push sources: {', '.join(summary.push_sources)}")


@features_app.command("materialize")
def features_materialize(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--start", help="ISO-8601; default: everything."),
    end: str | None = typer.Option(None, "--end", help="ISO-8601; default: now / the newest row."),
) -> None:
    """Rebuild the feature tables from the lake and load the online store."""
    from features.store.repository import materialize

    summary = materialize(_settings(ctx), start=_when(start, "--start"), end=_when(end, "--end"))
    typer.echo(f"materialized {', '.join(summary.feature_views)} for {summary.start:%Y-%m-%d %H:%M} .. "
               f"{summary.end:%Y-%m-%d %H:%M}: {summary.user_stats_rows} user-stats rows, "
               f"{summary.response_features_added} new response-feature rows "
               f"({', '.join(f'{k} {v:.1f}s' for k, v in summary.seconds.items())})")


@features_app.command("query")
def features_query(
    ctx: typer.Context,
    keys: list[str] = typer.Argument(None, help="Entity keys for --online (user or response ids)."),
    online: str | None = typer.Option(None, "--online", help="Entity to look up online: user or response."),
    offline: Path | None = typer.Option(None, "--offline", help="Entity file (CSV/parquet) for a point-in-time join."),
    feature: list[str] = typer.Option([], "--feature", "-f", help="Feature names or view:feature refs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Online lookup by entity key, or an offline point-in-time join for an entity file."""
    from features.store.serving import format_rows, get_offline, get_online, read_entity_file

    s = _settings(ctx)
    fmt: Literal["table", "json"] = "json" if as_json else "table"
    if (online is None) == (offline is None):
        raise typer.BadParameter("give exactly one of --online ENTITY KEY... or --offline FILE")
    if online is not None:
        if online not in ("user", "response") or not keys:
            raise typer.BadParameter("--online takes user or response, followed by one or more keys")
        typer.echo(format_rows(get_online(s, online, list(keys), feature or None), fmt=fmt))
    else:
        assert offline is not None
        typer.echo(format_rows(get_offline(s, read_entity_file(offline), feature or None), fmt=fmt))


@features_app.command("training-set")
def features_training_set(
    ctx: typer.Context,
    version: int | None = typer.Option(None, "--version", help="Triples Delta version (default: newest)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder."),
    rebuild: Path | None = typer.Option(None, "--rebuild", help="Rebuild from a manifest.json (time travel)."),
    refresh_features: bool = typer.Option(False, "--refresh-features",
                                          help="Rebuild the feature tables from the lake first."),
) -> None:
    """Build a point-in-time-correct training set (parquet + manifest with the Delta versions)."""
    from features.training_set import build_training_set, rebuild_training_set

    s = _settings(ctx)
    ts = (rebuild_training_set(rebuild, out=out) if rebuild
          else build_training_set(s, version=version, out=out, refresh_features=refresh_features))
    m = ts.manifest
    typer.echo(f"training set {ts.path} (manifest {ts.manifest_path})")
    typer.echo(f"  Delta versions: {', '.join(f'{k} v{v}' for k, v in ts.versions.items())}")
    for split, info in ts.rows.items():
        typer.echo(f"  {split:<10} {info}")
    typer.echo(f"  content hash {ts.content_hash}; base rate {m.get('base_rate')}")


def _when(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{flag} must be ISO-8601, got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    """Attach the data-side commands to the root CLI."""
    app.add_typer(lake_app, name="lake")
    app.add_typer(features_app, name="features")
