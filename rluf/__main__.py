"""`python -m rluf` = the `rluf` command."""

from rluf.app.cli import main

main()
