"""`python -m rluf` = the `rluf` command."""

from rluf.cli import main

main()
