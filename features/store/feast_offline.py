"""Feast's DuckDB offline store, with DuckDB's ``delta`` extension loaded from the installed wheel.

Feast's ``duckdb`` offline store reads ``FileSource(file_format=DeltaFormat())`` through
``ibis.read_delta`` on ibis' default DuckDB backend, which tries to download the ``delta``
extension from extensions.duckdb.org on first use. That fails without network access
(CI, air-gapped clusters) and is a supply-chain download at runtime anyway. The
``duckdb-ext-delta`` wheel ships the extension; this store points ibis' backend at it and
turns auto-install off.

``feature_store.yaml`` selects it with::

    offline_store:
      type: features.store.feast_offline.BundledDuckDBOfflineStore

Feast imports the class by that dotted path (and requires the config class to be named
``<Class>Config`` in the same module), so it must live in an importable package, not in
the generated repository.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

import duckdb_ext
import ibis
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig

__all__ = ["BundledDuckDBOfflineStore", "BundledDuckDBOfflineStoreConfig", "STORE_TYPE", "use_bundled_extensions"]

logger = logging.getLogger(__name__)

STORE_TYPE = "features.store.feast_offline.BundledDuckDBOfflineStore"
"""The ``offline_store.type`` value that selects this store."""

_lock = threading.Lock()
_done = False


def use_bundled_extensions() -> None:
    """Make ibis' default backend a DuckDB that loads extensions from the installed wheel (idempotent).

    Also repairs a process in which a Delta read already failed on the download.
    """
    global _done
    with _lock:
        if _done:
            return
        ibis.set_backend(
            ibis.duckdb.connect(extension_directory=duckdb_ext.get_extension_dir(), autoinstall_known_extensions=False)
        )
        _done = True
        logger.debug("ibis default backend: duckdb with bundled extensions from %s", duckdb_ext.get_extension_dir())


class BundledDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Config of ``BundledDuckDBOfflineStore``: the same keys as Feast's ``duckdb`` store."""

    type: Literal["features.store.feast_offline.BundledDuckDBOfflineStore"] = (  # type: ignore[assignment]
        "features.store.feast_offline.BundledDuckDBOfflineStore"
    )


class BundledDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store; importing this module sets up the bundled ``delta`` extension."""


use_bundled_extensions()
