"""The value checks and choice tuples that config sections declare (CHOICES / RANGES).

A leaf module (standard library only, imports nothing of the package), so config.py and
every model/*_config.py import it without importing each other. A RANGES entry is
(test, what is expected); a tuple value is checked element by element.
"""

from __future__ import annotations


def at_least(lo: int):
    return (lambda v: v >= lo, f"an integer >= {lo}")


POSITIVE = (lambda v: v > 0, "a number > 0")
NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
BELOW_1 = (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
UNIT = (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")

INITS = ("xavier", "normal")  # model/base.py init_embedding
KNN_BACKENDS = ("auto", "numpy", "xla")  # graphs/knn.py build backends
