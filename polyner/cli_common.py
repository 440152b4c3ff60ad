"""What every ``polyner`` sub-command shares: log set-up and the error exit."""
from __future__ import annotations

import logging
from typing import NoReturn

import typer


def setup_logging(verbose: bool) -> None:
    """INFO logs with timestamps when verbose, warnings only otherwise."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def needs(command: str, *extras: str) -> None:
    """Exit 2 with ``error: polyner COMMAND needs: pip install "polyner[EXTRA]"`` when an extra is missing."""
    from polyner.extras import MissingExtraError, require_extras

    try:
        require_extras(f"polyner {command}", *extras)
    except MissingExtraError as exc:
        fail(str(exc))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on standard error and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
