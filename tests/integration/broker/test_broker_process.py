"""Start, status, stop and port conflicts of the embedded Tansu broker, against real processes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import psutil
import pytest

from rluf.errors import BrokerError
from rluf.settings import BrokerSettings
from streams.broker_process import (
    LOG_FILE,
    PID_FILE,
    BrokerInfo,
    api_versions_ok,
    broker_status,
    free_port,
    start_broker,
    stop_broker,
)

pytestmark = pytest.mark.integration


def _dead_pid() -> int:
    """A pid that certainly names no process right now."""
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


def test_start_is_idempotent_and_stop_cleans_up(tmp_path: Path) -> None:
    settings = BrokerSettings(port=free_port())

    first = start_broker(settings, tmp_path)
    try:
        assert not first.already_running
        assert (first.host, first.port) == ("127.0.0.1", settings.port)
        assert api_versions_ok(first.host, first.port)
        pid_file = json.loads((tmp_path / PID_FILE).read_text())
        assert pid_file == {
            "pid": first.pid, "host": "127.0.0.1", "port": settings.port,
            "started_at": first.started_at.isoformat(), "storage_url": "memory://tansu/",
        }
        assert os.getpgid(first.pid) == first.pid  # own session: its group can be signalled alone

        again = start_broker(settings, tmp_path)
        assert again.already_running
        assert (again.pid, again.port, again.started_at) == (first.pid, first.port, first.started_at)

        status = broker_status(tmp_path)
        assert status is not None
        assert (status.alive, status.answering, status.running) == (True, True, True)
        assert status.info.pid == first.pid
        assert 0.0 <= status.uptime_s < 60.0
        assert (tmp_path / LOG_FILE).is_file()
    finally:
        outcome = stop_broker(tmp_path, timeout_s=10.0)

    assert outcome == "stopped"
    assert not psutil.pid_exists(first.pid)
    assert not (tmp_path / PID_FILE).exists()
    assert not api_versions_ok("127.0.0.1", settings.port, timeout_s=0.3)
    assert broker_status(tmp_path) is None
    assert stop_broker(tmp_path) == "not_running"


def test_port_held_by_another_broker_gives_broker_error(kafka_broker_info: BrokerInfo, tmp_path: Path) -> None:
    taken = BrokerSettings(port=kafka_broker_info.port)
    with pytest.raises(BrokerError) as err:
        start_broker(taken, tmp_path)
    message = str(err.value)
    assert f"port {kafka_broker_info.port}" in message and "already in use" in message
    assert "\n" not in message
    assert not (tmp_path / PID_FILE).exists()
    assert api_versions_ok(kafka_broker_info.host, kafka_broker_info.port)  # the holder is untouched


def test_bound_but_silent_port_is_detected_from_tansu_addrinuse_exit(tmp_path: Path) -> None:
    # A socket that is bound but not listening refuses connections, so only Tansu's own
    # bind fails: it logs AddrInUse and exits 0. That exit must become a BrokerError.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_broker(BrokerSettings(port=port, start_timeout_s=10.0), tmp_path)
    assert "AddrInUse" in (tmp_path / LOG_FILE).read_text()
    assert not (tmp_path / PID_FILE).exists()


def test_stale_pid_file_is_reported_replaced_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    stale = {"pid": _dead_pid(), "host": "127.0.0.1", "port": port,
             "started_at": "2026-01-01T00:00:00+00:00", "storage_url": "memory://tansu/"}
    (tmp_path / PID_FILE).write_text(json.dumps(stale))

    status = broker_status(tmp_path)
    assert status is not None
    assert (status.alive, status.answering, status.uptime_s) == (False, False, 0.0)
    assert stop_broker(tmp_path) == "stale"
    assert not (tmp_path / PID_FILE).exists()

    (tmp_path / PID_FILE).write_text(json.dumps(stale))
    info = start_broker(BrokerSettings(port=port), tmp_path)
    try:
        assert not info.already_running
        assert info.pid != stale["pid"]
        assert json.loads((tmp_path / PID_FILE).read_text())["pid"] == info.pid
    finally:
        assert stop_broker(tmp_path) == "stopped"


def test_stop_falls_back_to_sigkill_while_a_client_holds_a_connection(tmp_path: Path) -> None:
    # With a client connected, Tansu takes ~5 s to exit on SIGTERM; past the timeout we SIGKILL.
    info = start_broker(BrokerSettings(port=free_port()), tmp_path)
    with socket.create_connection((info.host, info.port)):
        assert stop_broker(tmp_path, timeout_s=0.3) == "killed"
    assert not psutil.pid_exists(info.pid)
    assert not (tmp_path / PID_FILE).exists()
