"""User-facing errors: one line, no traceback (the CLIs catch these); and the pieces of
their messages that depend on how recgoat-jax was installed (a source checkout with its
Makefile, or a pip install) and on what the user typed ("did you mean ...").

Imports nothing but the standard library: any module may use it, on any error path."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class UserError(Exception):
    """Bad input from the user: a file, a line or field, and what was expected."""


class DataError(UserError):
    """A dataset file is missing or malformed."""


class ConfigError(UserError):
    """A config file or --set override is invalid."""


class TrainingDiverged(UserError, FloatingPointError):
    """The training loss became NaN or infinite (also a FloatingPointError, which the
    experiment drivers catch to record a diverged run)."""


# ------------------------------------------------------------------ did you mean

def close_matches(word: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """The choices closest to `word` (difflib, best first; case-insensitive), at most n."""
    choices = [str(c) for c in choices]
    by_lower = {}
    for c in choices:
        by_lower.setdefault(c.lower(), c)
    found = difflib.get_close_matches(str(word).lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[m] for m in found]


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """"did you mean 'x'?" (or "'x' or 'y'") for the choices close to word, each shown
    as prefix + choice; '' when none is close."""
    found = close_matches(word, choices)
    if not found:
        return ""
    return "did you mean " + " or ".join(repr(prefix + m) for m in found) + "?"


# ------------------------------------------------- how recgoat-jax was installed

def source_checkout() -> Path | None:
    """The repository root when this package runs from a source checkout (a Makefile and
    .git next to the package directory), else None (an installed package)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "Makefile").is_file() and (root / ".git").exists():
        return root
    return None


def features_install_hint() -> str:
    """How to install what `recgoat features` needs."""
    if source_checkout() is not None:
        return ("pip install torch==2.13.0 && pip install -r requirements-features.txt "
                "(make features does this in .venv)")
    return "pip install torch==2.13.0 && pip install 'recgoat-jax[features]'"


def command_hint(command: str, dataset: str) -> str:
    """`make <command> DATASET=x` in a source checkout, else `recgoat <command> --dataset x`
    (command: data or features)."""
    if source_checkout() is not None:
        return f"`make {command} DATASET={dataset}`"
    return f"`recgoat {command} --dataset {dataset}`"


def build_dataset_hint(dataset: str) -> str:
    """How to build a dataset from raw Amazon dumps: the data and features commands."""
    where = "README 'Datasets'" if source_checkout() is not None else "recgoat data --help"
    return f"{command_hint('data', dataset)} then {command_hint('features', dataset)} ({where})"
