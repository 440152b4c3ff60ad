"""What every ``polyner`` sub-command shares: the error handler, the shared options, log set-up, reading text.

Every verb that tags takes the same model options (:func:`model_option`, :func:`backend_option`,
:func:`threads_option`, :func:`max_length_option`, :func:`decoding_option`, :func:`batch_size_option`) and turns
them into one :class:`~polyner.spec.ModelSpec` with :func:`model_spec`.

Verbs raise :class:`~polyner.errors.UserError` (or let the library raise it) for anything the user can fix;
:class:`PolynerGroup` prints it as ``error: MESSAGE`` in one line and exits 2, in one place.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import typer
from typer.core import TyperGroup

from polyner.errors import UserError

if TYPE_CHECKING:
    from polyner.spec import ModelSpec

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


def model_option(help: str = "Model directory, name or hub id OWNER/NAME (default: the shipped model)."
                 ) -> Optional[str]:
    """``--model`` / ``-m``: what every verb that tags with one model runs."""
    return typer.Option(None, "--model", "-m", help=help)


def backend_option(name: str = "--backend") -> Optional[str]:
    """``--backend``: torch, onnx or onnx-int8; None: from the model directory."""
    return typer.Option(None, name, help="torch, onnx or onnx-int8 (an ONNX export is made once, on first use: the "
                        "fastest on a CPU); default: from the model directory.")


def threads_option(default: Optional[int] = None,
                   help: str = "Intra-op threads of ONNX Runtime or torch (default: all cores).") -> Optional[int]:
    """``--threads`` (old spelling ``--onnx-threads`` still works)."""
    return typer.Option(default, "--threads", "--onnx-threads", help=help)


def max_length_option() -> Optional[int]:
    """``--max-length``: pieces per window; None: the model's own."""
    return typer.Option(None, "--max-length", help="Pieces per window (default: the model's own, ner_max_length in "
                        "its config.json, else 128).")


def decoding_option(default: Optional[str] = "viterbi") -> str:
    """``--decoding``: viterbi or argmax."""
    return typer.Option(default, "--decoding", help="Word labels: viterbi (IOB2-constrained) or argmax (each word "
                        "on its own).")


def batch_size_option(default: int = 32) -> int:
    """``--batch-size``: windows per forward pass."""
    return typer.Option(default, "--batch-size", help="Windows per forward pass.")


def model_spec(model: Optional[str], backend: Optional[str] = None, threads: Optional[int] = None,
               max_length: Optional[int] = None, decoding: str = "viterbi", batch_size: int = 32) -> ModelSpec:
    """The model options of a verb, resolved once: the model located and checked, its backend chosen."""
    from polyner.spec import ModelSpec

    return ModelSpec.resolve(model, backend, threads, max_length=max_length, decoding=decoding,
                             batch_size=batch_size)


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
        utf16 = " (a UTF-16 byte-order mark: convert it, e.g. iconv -f UTF-16 -t UTF-8)" \
            if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise UserError(f"{source} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} "
                        f"({exc.reason}){utf16}") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UserError(f"{source} is not UTF-8 text: a NUL byte at line {line} (binary, or UTF-16?)")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    return lines
