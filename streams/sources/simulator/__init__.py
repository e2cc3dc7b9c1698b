"""`rluf simulate`: seeded chat traffic with exact ground truth.

``simulate`` is the entry point; ``traffic`` builds users, conversations and reactions,
``reference_rules`` is an independent reading of the filter rules that keeps the ground
truth exact, ``wire_lines`` writes the lines in producer send order, and ``text_corpus``
(with ``text_templates``) supplies the conversation text.
"""
