"""``rluf serve``: the feedback gateway (docs/gateway.md)."""

from __future__ import annotations

import logging

import typer

from rluf.settings import Settings

__all__ = ["register"]


def serve_cmd(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface to bind (default: gateway.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="TCP port (default: gateway.port, 8080)."),
    dev: bool = typer.Option(False, "--dev", help="Local demo: chat page with a session token, random secrets "
                             "when none are set; loopback only."),
) -> None:
    """Serve the chat API, the reactions API and the chat page; events go to Kafka."""
    from deploy.gateway.server import serve

    settings: Settings = ctx.obj
    update: dict[str, object] = {}
    if host is not None:
        update["host"] = host
    if port is not None:
        update["port"] = port
    if dev:
        update["dev_mode"] = True
    gw = settings.gateway.model_copy(update=update)
    settings = settings.model_copy(update={"gateway": gw})
    scheme_host = f"[{gw.host}]" if ":" in gw.host else gw.host
    typer.echo(f"rluf gateway on http://{scheme_host}:{gw.port} "
               f"({'dev mode: open it in a browser' if gw.dev_mode else 'API only; see docs/gateway.md'}); "
               "Ctrl-C stops it", err=True)
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    serve(settings, log_level="info" if verbose else "warning")


def register(app: typer.Typer) -> None:
    """Attach `rluf serve` to the root CLI."""
    app.command("serve")(serve_cmd)
