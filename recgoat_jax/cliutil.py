"""What every command line shares: a parser that says "did you mean" for a mistyped
subcommand, choice or flag, a help formatter that shows defaults, the data-root default,
the -v/-q flags and the one logging set-up they drive, `result` (what a command produces,
on stdout), and running a command so that a UserError is one line and status 2.

Where output goes, in every command: what the command produces (train's results table
and run directory, report's table, recommend's lists, the 'wrote' line of data /
features / demo) goes to stdout through `result`, whatever -q says; status lines
(logging) and progress bars go to stderr, which -q silences but for warnings and errors.

Like config.py and errors.py, any module may import this one (it imports neither jax nor
any other package of the project)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from recgoat_jax.errors import UserError, close_matches, did_you_mean

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


class ArgumentParser(argparse.ArgumentParser):
    """argparse with "did you mean" (difflib): for a value that is not one of an
    argument's choices (a subcommand: `recgoat trian`), and for an unknown flag, which is
    reported by the subcommand it was given to (`recgoat train --datset demo` answers with
    train's usage, not the top-level one). Subparsers are of this class too."""

    def _check_value(self, action, value):
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as e:
            hint = did_you_mean(value, action.choices) if isinstance(value, str) else ""
            if not hint:
                raise
            raise argparse.ArgumentError(action, f"{e.message}; {hint}") from None

    def parse_args(self, args=None, namespace=None):
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            self._owner(ns).error(unrecognized(self._owner(ns), extra))
        return ns

    def _owner(self, ns) -> argparse.ArgumentParser:
        """The innermost subparser chosen in ns (self when there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(ns, action.dest, None) or "")
                if isinstance(chosen, ArgumentParser):
                    return chosen._owner(ns)
        return self


def unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """'unrecognized arguments: ...' with a "did you mean" for each mistyped flag."""
    flags = {o[2:]: o for a in parser._actions for o in a.option_strings
             if o.startswith("--") and a.help is not argparse.SUPPRESS}
    hints = []
    for arg in extra:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            found = close_matches(flag[2:], flags)
            if found:
                hints.append(f"{flag}: did you mean {flags[found[0]]}?")
    return f"unrecognized arguments: {' '.join(extra)}" + ("; " + "; ".join(hints)
                                                           if hints else "")


def result(text: str) -> None:
    """What a command produces (a results table, a run directory, a 'wrote' line): to
    stdout, whatever the log level; status lines go to logging (stderr) instead."""
    print(text, file=sys.stdout, flush=True)


def data_root_default() -> str:
    """Where registered datasets live: $RECGOAT_DATA_ROOT, else data."""
    return os.environ.get(ENV_DATA_ROOT, "data")


def command_parser(prog: str, description: str, epilog: str,
                   add_arguments: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
                   ) -> argparse.ArgumentParser:
    """One subcommand's stand-alone parser (its `python -m` entry point): the shared help
    formatter around the module's own add_arguments, which `recgoat` also uses."""
    p = ArgumentParser(prog=prog, description=description, epilog=epilog,
                       formatter_class=HelpFormatter)
    return add_arguments(p)


def add_verbosity(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """-q/--quiet and -v/--verbose, the same in every command."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no status lines or progress bars on stderr, only warnings and "
                        "errors; what the command produces still goes to stdout")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also debug messages (default: progress and status messages)")
    return p


def add_progress(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--no-progress, for the commands that draw progress bars."""
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (the status lines stay); there are none anyway "
                        "when stderr is not a terminal")
    return p


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not under -q or --no-progress, and only on a
    terminal (a log file gets the status lines instead)."""
    return not (getattr(args, "quiet", False) or getattr(args, "no_progress", False)) \
        and sys.stderr.isatty()


def log_level(args: argparse.Namespace) -> int:
    """WARNING under --quiet, DEBUG under --verbose, else INFO."""
    if getattr(args, "quiet", False):
        return logging.WARNING
    return logging.DEBUG if getattr(args, "verbose", False) else logging.INFO


class _Formatter(logging.Formatter):
    """INFO as the bare message (what print used to show); other levels prefixed
    'warning: ', 'debug: <logger>: ' and so on."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return msg
        if record.levelno == logging.DEBUG:
            return f"debug: {record.name}: {msg}"
        return f"{record.levelname.lower()}: {msg}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest's capture, a redirect)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """The one logging set-up of the command line: one stderr handler on the root logger;
    the project's loggers (recgoat_jax.*) at `level`, other libraries' at WARNING (as
    Python's default), or at `level` when that is higher. Calling it again replaces it."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    # "__main__": a module of the project run as `python -m recgoat_jax.<module>`
    for name in ("recgoat_jax", "__main__"):
        logging.getLogger(name).setLevel(level)


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                interrupted: str = "run the same command again to resume") -> int:
    """Runs a CLI command with logging set up from its -v/-q: a UserError is one line on
    stderr and status 2."""
    configure_logging(log_level(args))
    # the error lines are the command's last word: printed whatever the log level
    try:
        return command(args)
    except UserError as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return 130
