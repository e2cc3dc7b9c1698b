"""A free TCP port on this host, for the local broker, test brokers and training rendezvous."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (bind to port 0, read it, close).

    Another process may grab it before the caller binds; good enough for a local broker,
    one test session or a torchrun rendezvous.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
