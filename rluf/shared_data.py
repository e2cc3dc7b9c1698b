"""Where the shared real data lives: ``../shared/data`` beside the checkout or the working directory.

`rluf import` and `rluf simulate` (and the paper-check benchmarks) read public human-feedback
data from there; nothing is ever downloaded. Part of the contracts floor, so any stage's CLI
can find the data without importing another stage's CLI.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["shared_data_dir"]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or the working directory), when present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None
