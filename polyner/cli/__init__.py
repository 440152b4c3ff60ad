"""The ``polyner`` command line (typer): one sub-module per area, each with its own ``app`` of verbs, merged here.

Every verb calls one library function. User errors (:class:`polyner.errors.UserError` and the builtin kinds in
:data:`polyner.cli.common.USER_ERRORS`) are printed as ``error: MESSAGE`` and exit 2 by :class:`PolynerGroup`.
"""
from __future__ import annotations

import typer

from polyner.cli import corpus, evaluation, finetune, packaging, serving, tagging, training
from polyner.cli.common import PolynerGroup

AREAS = (tagging, corpus, serving, evaluation, training, finetune, packaging)

app = typer.Typer(cls=PolynerGroup, add_completion=False, no_args_is_help=True,
                  help="polyner: multilingual NER, small and fast.")
for area in AREAS:
    app.add_typer(area.app)


def _print_version(value: bool) -> None:
    if value:
        from polyner import __version__

        typer.echo(f"polyner {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """polyner: multilingual NER, small and fast."""


def main() -> None:
    """Entry point of the ``polyner`` console script."""
    app()
