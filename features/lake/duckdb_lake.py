"""DuckDB over the Delta lake: connections with the bundled ``delta`` extension, tables at a version.

The feature tables and the training-set join run in DuckDB because it scans millions of
Delta rows, sorts them and joins them point-in-time (``ASOF JOIN``) in seconds on two
cores, without materialising the rows in Python. The ``delta`` extension comes from the
``duckdb-ext-delta`` wheel; nothing is downloaded (``autoinstall_known_extensions`` is
off), so this works on machines without network access.

Tables are attached at an explicit Delta version (``ATTACH ... (TYPE delta, VERSION n)``),
which is what makes a training set reproducible: the version read is recorded, and time
travel reads the same snapshot again later.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from urllib.parse import urlparse

import duckdb
import duckdb_ext

from features.lake.reader import lake_error
from features.lake.schema import table_uri

__all__ = ["attach_table", "connect", "is_local", "resolve_root"]

logger = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_local(uri: str) -> bool:
    """Return whether ``uri`` is a local path (no scheme, or ``file://``)."""
    return urlparse(uri).scheme in ("", "file")


def resolve_root(root: str) -> str:
    """Return the lake root as an absolute path (local) or unchanged (object store).

    Feast's duckdb store and DuckDB resolve relative paths against the working
    directory, so every path handed to them is made absolute first.
    """
    if not is_local(root):
        return root.rstrip("/")
    path = urlparse(root).path if root.startswith("file://") else root
    return os.path.abspath(path)


def connect(
    *, threads: int | None = None, storage_options: Mapping[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection with the bundled ``delta`` extension loaded.

    Args:
        threads: DuckDB worker threads; DuckDB's default (all cores) if None.
        storage_options: Object-store options in delta-rs' spelling (``AWS_ACCESS_KEY_ID``,
            ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``); turned into a
            DuckDB S3 secret when given.
    """
    con = duckdb_ext.init(duckdb.connect())
    con.execute("LOAD delta")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    opts = dict(storage_options or {})
    if opts:
        _s3_secret(con, opts)
    return con


def _s3_secret(con: duckdb.DuckDBPyConnection, opts: Mapping[str, str]) -> None:
    keys = {
        "KEY_ID": opts.get("AWS_ACCESS_KEY_ID"),
        "SECRET": opts.get("AWS_SECRET_ACCESS_KEY"),
        "REGION": opts.get("AWS_REGION"),
        "SESSION_TOKEN": opts.get("AWS_SESSION_TOKEN"),
    }
    parts = [f"{k} '{v}'" for k, v in keys.items() if v]
    endpoint = opts.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        parts.append(f"ENDPOINT '{parsed.netloc or parsed.path}'")
        parts.append(f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}")
        parts.append("URL_STYLE 'path'")
    if parts:
        con.execute(f"CREATE OR REPLACE SECRET rluf_lake (TYPE s3, {', '.join(parts)})")


def attach_table(con: duckdb.DuckDBPyConnection, alias: str, root: str, name: str, *, version: int) -> None:
    """Attach table ``name`` under ``root`` at Delta ``version``; query it as ``alias``.

    Raises:
        LakeError: the table or that version cannot be read.
    """
    if not _IDENT.match(alias):
        raise ValueError(f"bad alias {alias!r}")
    uri = table_uri(resolve_root(root), name)
    try:
        con.execute(f"ATTACH '{uri}' AS {alias} (TYPE delta, VERSION {int(version)})")
    except duckdb.Error as exc:
        raise lake_error(exc, uri=uri, action=f"attach (version {version})") from exc
    logger.debug("attached %s at version %d as %s", uri, version, alias)
