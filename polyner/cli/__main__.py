"""``python -m polyner.cli`` (as torchrun and the load test start it)."""
from polyner.cli import main

main()
