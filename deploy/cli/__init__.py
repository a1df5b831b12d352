"""The ``deploy`` command line: one module per command, each a thin wrapper over the Python
function of the same name in :mod:`deploy.api`. :mod:`deploy.cli.app` holds the Typer app and
:func:`main` runs it (one-line errors, exit codes)."""

from deploy.cli.app import app, one_line
from deploy.cli.main import main, usage_line

__all__ = ["app", "main", "one_line", "usage_line"]
