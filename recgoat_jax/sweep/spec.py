"""A study as data: named rows trained on named datasets, a grid per row, seeds, the
valid metric that chooses a row's grid point. Nothing here runs (runner.py does).

    Study("realdata", "Every model tuned on VALID",
          rows=(Row("lightgcn", "lightgcn", config="lightgcn.yaml",
                    grid=(("train.lr=0.001",), ("train.lr=0.005",))),
                Row("lightgcn_1layer", "lightgcn", parent="lightgcn",
                    fixed=("model.n_layers=1",))),      # an ablation at the chosen point
          datasets=(Data("debian", {"main": "data/debian-deps-dev"}),),
          seeds=(0, 1, 2), common=("train.epochs=1000",))

A row's runs: its first seed at every grid point; the point with the best valid metric
(`choose_on`) is chosen; the other seeds run there. An ablation row (`parent`) has no
grid: it runs at its parent's chosen point with its own `fixed` overrides on top.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

Point = tuple[str, ...]  # --set overrides, "section.key=value"


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the report. config: a file of recgoat_jax/configs/ or a path; None:
    the shipped config `recgoat train --model <model> --dataset <dir>` picks."""
    name: str
    model: str
    what: str = ""
    config: str | None = None
    fixed: Point = ()  # on every point (an ablation: on top of its parent's point)
    grid: tuple[Point, ...] = ((),)
    build: str = "main"  # which build of each dataset; a dataset without it skips the row
    parent: str | None = None
    seeds: tuple[int | None, ...] | None = None  # None: the study's
    cost: float = 1.0  # larger runs first, so the last worker is not left with a long one
    opt_in: bool = False  # runs only when asked for by name
    common: bool = True  # the study's common and --set overrides and checkpoints apply
    # (a fitted model, itemknn / blend, reads no training keys: False)


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset under one name; builds: build name -> directory (or registered name)."""
    name: str
    builds: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Study:
    """seeds: None trains with the config's own train.seed. common: overrides of every
    run, before the row's. groups: report test metrics by user activity (results.json's
    "groups", evaluate/groups.py's buckets; trained runs keep a best checkpoint for them,
    deleted once the run is done). reuse: other runs directories whose finished runs
    count as done. notes(dataset, summary rows) -> extra Markdown lines."""
    name: str
    title: str
    rows: tuple[Row, ...]
    datasets: tuple[Data, ...]
    seeds: tuple[int | None, ...] = (0,)
    choose_on: str = "recall@20"
    metrics: tuple[str, ...] = ("recall@20", "ndcg@20")
    common: Point = ()
    groups: bool = False
    reuse: tuple[str, ...] = ()
    protocol: str = ""
    notes: Callable[[str, dict], list[str]] | None = dataclasses.field(default=None,
                                                                      compare=False)

    def __post_init__(self):
        names = [r.name for r in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"study {self.name}: row names repeat: {names}")
        for r in self.rows:
            parent = self.row(r.parent) if r.parent else None
            if r.parent and (parent is None or parent.parent):
                raise ValueError(f"study {self.name}: row {r.name}'s parent {r.parent!r} is "
                                 "not a row with a grid of its own")
            if parent and r.grid != ((),):
                raise ValueError(f"study {self.name}: ablation {r.name} has a grid")

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def seeds_of(self, row: Row) -> tuple[int | None, ...]:
        return self.seeds if row.seeds is None else row.seeds

    def points(self, row: Row) -> tuple[Point, ...]:
        """The grid a row is chosen over (an ablation: its parent's)."""
        return self.row(row.parent).grid if row.parent else row.grid

    def overrides(self, row: Row, point: int) -> list[str]:
        """The row's overrides at grid point `point` (an ablation: the parent's point with
        the ablation's fixed on top)."""
        if row.parent:
            parent = self.row(row.parent)
            return [*parent.fixed, *parent.grid[point], *row.fixed]
        return [*row.fixed, *row.grid[point]]

    def select(self, names: list[str] | None) -> Study:
        """The study with only the named rows (None: every row not opt-in); an ablation
        keeps its parent, which runs only as far as the choice needs."""
        if names is None:
            keep = [r.name for r in self.rows if not r.opt_in]
        else:
            unknown = [n for n in names if self.row(n) is None]
            if unknown:
                raise ValueError(f"unknown rows {unknown}; study {self.name} has "
                                 f"{', '.join(r.name for r in self.rows)}")
            keep = list(names)
        keep += [self.row(n).parent for n in keep if self.row(n).parent]
        return dataclasses.replace(self, rows=tuple(r for r in self.rows if r.name in keep))
