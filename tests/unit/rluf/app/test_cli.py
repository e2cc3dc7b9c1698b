"""The CLI reports a user's mistakes on one line with the right exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RLUF = [sys.executable, "-m", "rluf"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RLUF_")}
    full_env.update(env or {})
    return subprocess.run([*RLUF, *args], env=full_env, capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_bad_setting_names_field_and_value_exit_2(tmp_path: Path) -> None:
    done = run("stream", "stats", env={"RLUF_KAFKA__PARTITIONS": "abc"}, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line_error(done)
    assert line.startswith("rluf: invalid setting kafka.partitions:") and "'abc'" in line


def test_missing_and_broken_config_files(tmp_path: Path) -> None:
    done = run("--config", str(tmp_path / "nope.yaml"), "stream", "stats", cwd=tmp_path)
    assert done.returncode == 1 and "nope.yaml does not exist" in one_line_error(done)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kafka: [\n")
    done = run("--config", str(broken), "stream", "stats", cwd=tmp_path)
    assert done.returncode == 1 and "broken.yaml:2 is not valid YAML" in one_line_error(done)


def test_replay_of_a_missing_file(tmp_path: Path) -> None:
    done = run("replay", str(tmp_path / "events.jsonl"), cwd=tmp_path)
    assert done.returncode == 1
    assert one_line_error(done) == f"rluf: {tmp_path / 'events.jsonl'}: no such file"


def test_import_of_a_broken_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"message_id": "a"}\n{"message_id": \n')
    done = run("import", "oasst", "--path", str(bad), "--out", str(tmp_path / "out.jsonl"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{bad}:" in one_line_error(done)


def test_stats_before_any_worker_ran(tmp_path: Path) -> None:
    done = run("stream", "stats", env={"RLUF_DATA_HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 1 and "no stream worker has written metrics" in done.stdout
