"""The sources `rluf import` knows, by name, and the one call that imports a file of either.

Each source has its own module beside this one (``oasst``, ``hh_rlhf``), built from the
shared pieces in ``wire_events``; this module only picks one and writes its events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from streams.sources.importers.hh_rlhf import hh_rlhf_events
from streams.sources.importers.oasst import oasst_events
from streams.sources.importers.wire_events import ImportResult, write_events

__all__ = ["SOURCES", "SourceName", "import_source"]

SourceName = Literal["oasst", "hh-rlhf"]
SOURCES: tuple[str, ...] = ("oasst", "hh-rlhf")


def import_source(
    name: SourceName, path: Path, out: Path, *, love_rate: float | None = None, seed: int = 0
) -> ImportResult:
    """Import one source file into a JSONL file of wire events (what `rluf import` calls).

    Args:
        name: ``"oasst"`` (OpenAssistant flat messages JSONL) or ``"hh-rlhf"`` (gzip JSONL of
            ``{"chosen", "rejected"}`` pairs).
        path: The source file.
        out: Destination JSONL file of events.
        love_rate: Target share of Loved responses (e.g. ``0.02``); ``None`` keeps the data's rate.
        seed: Seed for reaction delays, love-rate sampling and (hh-rlhf) synthetic times.

    Returns:
        The result, whose :meth:`ImportResult.counts` the CLI reports.

    Raises:
        InputFileError: If the file is missing or a line is not usable.
        ValueError: If ``name`` is unknown or ``love_rate`` is outside ``[0, 1)``.
    """
    if name == "oasst":
        result = oasst_events(path, love_rate=love_rate, seed=seed)
    elif name == "hh-rlhf":
        result = hh_rlhf_events(path, love_rate=love_rate, seed=seed)
    else:
        raise ValueError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
    write_events(result, out)
    return result
