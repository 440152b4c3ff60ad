"""The base class of errors caused by what the user gave (a path, a flag, a file, a missing extra).

The ``polyner`` command line prints any of them as ``error: MESSAGE`` on one line and exits with 2; library
callers can catch :class:`UserError` to tell bad input from bugs. Each subclass also keeps its builtin base
(``ValueError``, ``ImportError``) so existing ``except`` clauses still catch it.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the input, the configuration or the installation; the message says what to fix."""


class ModelDirectoryError(UserError, ValueError):
    """A model directory is missing, incomplete or corrupt; the message names the path."""
