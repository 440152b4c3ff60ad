"""What every ``polyner`` sub-command shares: the error handler, the shared options, log set-up, reading text.

Verbs raise :class:`~polyner.errors.UserError` (or let the library raise it) for anything the user can fix;
:class:`PolynerGroup` prints it as ``error: MESSAGE`` in one line and exits 2, in one place.
"""
from __future__ import annotations

import logging
from typing import Optional

import typer
from typer.core import TyperGroup

from polyner.errors import UserError

#: What the command line reports as a user error: polyner's own, and the builtin kinds the library raises for
#: bad values (ValueError), missing files (FileNotFoundError) and missing packages (ImportError).
USER_ERRORS = (UserError, ValueError, FileNotFoundError, ImportError)
logger = logging.getLogger("polyner.cli")


class PolynerGroup(TyperGroup):
    """The root command group: turns a user error raised by any verb into one ``error:`` line and exit 2."""

    def invoke(self, ctx):  # noqa: ANN001 (click's signature)
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            logger.debug("user error", exc_info=True)
            message = " ".join(str(exc).split("\n")) or type(exc).__name__
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None


def verbose_option(default: bool) -> bool:
    """``--verbose/--quiet`` (``-v/-q``): INFO logs, or warnings only; every verb uses this one flag."""
    return typer.Option(default, "--verbose/--quiet", "-v/-q", help="INFO logs (verbose) or warnings only (quiet).")


def languages_option(help: str = "Comma-separated languages, e.g. de,fr,sw (default: all found).") -> Optional[str]:
    """``--languages`` (old spelling ``--langs`` still works)."""
    return typer.Option(None, "--languages", "--langs", help=help)


def split_list(value: Optional[str]) -> Optional[list[str]]:
    """``"a, b,"`` -> ``["a", "b"]``; None or empty -> None."""
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    return items or None


def one_model(option: Optional[str], positional: Optional[str], flag: str = "--model") -> str:
    """The model given as ``--model`` or (the older spelling) as a positional argument; exactly one."""
    if option and positional and option != positional:
        raise UserError(f"give the model once: {flag} {option} or {positional}")
    model = option or positional
    if not model:
        raise UserError(f"missing {flag}: a model directory or name")
    return model


def setup_logging(verbose: bool) -> None:
    """INFO logs with timestamps when verbose, warnings only otherwise."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def needs(command: str, *extras: str) -> None:
    """Raise the user error ``polyner COMMAND needs: pip install "polyner[EXTRA]"`` when an extra is missing."""
    from polyner.extras import require_extras

    require_extras(f"polyner {command}", *extras)


def text_lines(data: bytes, source: str) -> list[str]:
    """The lines of UTF-8 ``data``: split at ``\\n`` only, a ``\\r`` before it and a leading byte-order mark
    dropped. Raises a user error naming ``source`` and the line of the first bad byte when ``data`` is not UTF-8
    text (a binary file, say), so nothing is tagged."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{source} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} "
                        f"({exc.reason})") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UserError(f"{source} is not UTF-8 text: a NUL byte at line {line} (binary, or UTF-16?)")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    return lines
