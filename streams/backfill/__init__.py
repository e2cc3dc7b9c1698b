"""`rluf backfill`: the stream worker's core run over a JSONL or parquet file on Apache Beam.

One implementation, two drivers: the backfill feeds the same ``AttributionEngine`` that the
stream worker feeds (parsing, filtering, windowing and labeling all live there) and lands
its output through the same ``DeltaLandingSink``, so a file of events and the same events
read from Kafka give the same triples. This package only reads, orders, batches and hands off.

The pipeline (drawn in ``pipeline``) reads chunks, attributes them on one key, and lands once:

* Reading parallelises: a JSONL file is cut into byte ranges (a line belongs to the range
  its first byte is in), a parquet file into row groups, and each chunk is read by any
  worker, from a local path or any Beam file system (``gs://``, ``s3://``).
* ``Attribute`` runs as ONE keyed group on ONE worker. The engine's watermark and its
  per-user filter state (token buckets, daily caps, Love bursts, low-information counts)
  are global, so the records must pass through a single engine in file order. Beam gives no
  order guarantee, so this step collects the file's chunks (memory: about the file's size)
  and sorts them. Parsing happens inside the engine, so it is part of this serial step too:
  this step bounds the backfill's throughput, whatever the runner's parallelism.
* ``Land`` is one ``DeltaLandingSink.land`` call (quarantine, corrections, then triples
  with the checkpoint), as the stream worker lands one step: a Delta table takes one writer
  per checkpoint. The Parquet encoding inside delta-rs is multi-threaded.

Positions: a record's topic is the file's name, its partition 0 and its offset the
0-based line number (parquet: row number), so backfill rows carry source positions just as
stream rows do. The app id (``backfill-<hash of path, size, mtime>``) and the checkpoint
``{(file name, 0): number of lines}`` make a re-run of the same file land nothing: the
engine is restored with the recorded checkpoint and skips every line below it.

Modules: ``inputs`` (what the file is, how it is cut into chunks and read), ``transforms``
(the DoFns and the batch coder), ``pipeline`` (``build_pipeline``, ``run_backfill`` and the
result). Beam itself is imported when a backfill is built or run, not when this package is.
"""
