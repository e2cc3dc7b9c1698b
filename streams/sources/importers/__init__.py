"""`rluf import`: public human-feedback data (OpenAssistant, hh-rlhf) as wire events.

``catalog.import_source`` picks a source by name; ``oasst`` and ``hh_rlhf`` read one dataset
each, from the building blocks in ``wire_events``.
"""
