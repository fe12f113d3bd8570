"""Sweeps of training runs described as data: spec (a study's rows, grids, seeds),
runner (tasks, reuse of finished runs, worker processes), choose (the grid point chosen
on valid, mean +- std over seeds), report (JSON + Markdown)."""

from recgoat_jax.sweep.spec import Data, Row, Study

__all__ = ["Data", "Row", "Study"]
