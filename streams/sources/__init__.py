"""Sources of wire events: importers of real human-feedback data and the traffic simulator.

Both write what a chat product's producer would send (``response`` and ``reaction`` events,
one JSON object per line), which `rluf replay` publishes to Kafka and `rluf backfill` lands
directly.
"""
