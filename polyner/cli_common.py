"""What every ``polyner`` sub-command shares: log set-up, the error exit and reading text input."""
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


def text_lines(data: bytes, source: str) -> list[str]:
    """The lines of UTF-8 ``data``: split at ``\\n`` only, a ``\\r`` before it and a leading byte-order mark
    dropped. Exits with an error naming ``source`` and the line of the first bad byte when ``data`` is not UTF-8
    text (a binary file, say), so nothing is tagged."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        fail(f"{source} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} ({exc.reason})")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        fail(f"{source} is not UTF-8 text: a NUL byte at line {line} (binary, or UTF-16?)")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    return lines
