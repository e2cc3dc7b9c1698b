"""The Feast feature store over the lake: feature definitions, the Delta feature tables, serving, push.

Modules, lowest first: ``user_stats`` and ``text_features`` (pure feature logic),
``feature_tables`` (the Delta tables behind the views), ``definitions`` (the Feast objects and
repository files), ``feast_offline`` (the offline-store plugin Feast loads by dotted path),
``repository`` (open, apply, materialize), then ``serving``, ``push`` and ``reputation``.
This package face re-exports nothing, so the stream worker can import ``reputation``
without importing Feast or pandas.
"""
