"""The `rluf` command line: wires each folder's command group together.

Only this module builds ``Settings``; commands read them from ``ctx.obj``. Every error a
user can fix is printed as one line (``rluf: ...``) with exit code 1 (2 for a bad
setting), never as a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
import yaml
from pydantic import ValidationError

from rluf.errors import RlufError
from rluf.schemas import first_error
from rluf.settings import load_settings

__all__ = ["app", "main"]

_NOISY_LOGGERS = ("kafka", "aiokafka", "faust", "mode", "apache_beam", "feast", "great_expectations", "deepspeed")

app = typer.Typer(
    name="rluf",
    help="Reinforcement Learning from User Feedback: live reactions to a better model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML settings file (default: $RLUF_CONFIG when set)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
) -> None:
    """Build the settings once; subcommands take the slices they need."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # libraries that reset their own loggers' levels
        handler.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:  # client libraries log every retry; rluf reports the outcome on one line
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config_file = config or (Path(os.environ["RLUF_CONFIG"]) if os.environ.get("RLUF_CONFIG") else None)
    try:
        ctx.obj = load_settings(config_file)
    except FileNotFoundError as exc:
        raise RlufError(f"config file {exc} does not exist") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RlufError(f"config file {config_file}{where} is not valid YAML: {problem}") from exc


@app.command("demo")
def demo(
    ctx: typer.Context,
    responses: int | None = typer.Option(None, "--responses", min=100, help="Simulated responses (default: settings)."),
) -> None:
    """Run the whole pipeline end to end on the embedded defaults (what `make demo` runs)."""
    from rluf.app.demo import run_demo

    run_demo(ctx.obj, typer.echo, responses=responses)


def _register() -> None:
    from deploy.cli import register as register_deploy
    from features.cli import register as register_features
    from streams.cli import register as register_streams
    from validation.cli import register as register_validation

    register_streams(app)
    register_features(app)
    register_validation(app)
    register_deploy(app)


_register()


def main() -> None:
    """Console entry point with one-line errors."""
    try:
        app()
    except RlufError as exc:
        typer.echo(f"rluf: {exc}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        typer.echo(f"rluf: invalid setting {first_error(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("rluf: interrupted", err=True)
        sys.exit(130)
