"""The feedback gateway (`rluf serve`): authenticated chat and reactions over HTTP, events to Kafka."""
