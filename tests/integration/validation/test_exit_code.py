"""A process that runs the gate exits with its own exit code (no deltalake/Arrow abort at teardown)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import land, make_triples

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
SCRIPT = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from validation.lake_gate import validate_lake
    result = validate_lake(sys.argv[1], None, now=datetime(2026, 11, 10, tzinfo=UTC), reports_dir=Path(sys.argv[2]))
    sys.exit(0 if result.success else 3)
""")


def test_gate_process_exits_with_its_own_code(tmp_path: Path) -> None:
    good, bad = str(tmp_path / "good"), str(tmp_path / "bad")
    land(good, make_triples(days=3, per_day=60))
    land(bad, make_triples(days=8, per_day=60, newest_rate=0.5))
    codes = [
        subprocess.run([sys.executable, "-c", SCRIPT, root, str(tmp_path / "r")], cwd=REPO, capture_output=True,
                       text=True, timeout=120).returncode
        for root in (good, bad, good)
    ]
    assert codes == [0, 3, 0]  # 134 would be the abort at interpreter exit (shared/notes/deps.md)
