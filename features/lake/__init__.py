"""The Delta lake: table schemas, the exactly-once landing sink, readers, maintenance, DuckDB access.

Every stage that reads or writes the lake imports these modules directly; this package
face re-exports nothing, so importing one of them does not import the others.
"""
