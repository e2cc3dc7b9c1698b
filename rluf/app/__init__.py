"""The application: the `rluf` command (each stage's command group wired together) and the demo.

The roof of the house: it imports every stage, and nothing imports it except ``rluf.__main__``.
The rest of ``rluf`` (schemas, settings, errors, ports, records, localhost, shared_data) is
the ground floor every stage stands on.
"""
