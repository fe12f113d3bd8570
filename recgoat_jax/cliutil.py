"""What every command line shares: a help formatter that shows defaults, the data-root
default, and running a command so that a UserError is one line and status 2.

Like config.py and errors.py, any module may import this one (it imports neither jax nor
any other package of the project)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from recgoat_jax.errors import UserError

ENV_DATA_ROOT = "RECGOAT_DATA_ROOT"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs as written; every option's help ends with its default (when it has one
    and does not state it already)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or "default" in text.lower() or not action.option_strings
                or action.default in (None, False, [], argparse.SUPPRESS)
                or isinstance(action, argparse._HelpAction)):
            return text
        return f"{text} (default: %(default)s)"


def data_root_default() -> str:
    """Where registered datasets live: $RECGOAT_DATA_ROOT, else data."""
    return os.environ.get(ENV_DATA_ROOT, "data")


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                interrupted: str = "run the same command again to resume") -> int:
    """Runs a CLI command: a UserError is one line on stderr and status 2."""
    try:
        return command(args)
    except UserError as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return 130
