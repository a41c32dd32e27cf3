"""``python -m flowkeeper.cli``."""

from flowkeeper.cli import main

main()
