"""Training curves of run directories as PNG (matplotlib, Agg; no jax import): per run,
the loss parts (train/* of metrics.jsonl) and valid Recall@K / NDCG@K per evaluated epoch;
for several runs, one figure with every run's valid curves on shared axes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from recgoat_jax.errors import UserError

log = logging.getLogger(__name__)

PIN = "matplotlib==3.11.2"  # requirements.txt
# 12 x 3.6 inches at 100 dpi: 1200 x 360 pixels per figure
WIDTH, HEIGHT, DPI = 12.0, 3.6, 100


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl in file order; a last line cut by a kill is skipped, any
    other line that is not a JSON object with an integer "epoch" is a UserError."""
    path = Path(path)
    lines = path.read_text().splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if n == len(lines):
                continue  # the line a killed run was writing
            raise UserError(f"{path}:{n}: not a JSON line (expected one metrics row per "
                            "line, as recgoat train writes)") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise UserError(f"{path}:{n}: expected a JSON object with an integer \"epoch\"")
        rows.append(row)
    return rows


def _figure(n_panels: int):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(f"PNG curves need matplotlib (pip install {PIN}); --no-plots "
                        "skips them") from None
    # the object API: no pyplot, so no global backend or figure state
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _series(rows: list[dict], get) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], get(r)) for r in rows]
    pts = [(e, v) for e, v in pts if v is not None]
    return [e for e, _ in pts], [v for _, v in pts]


def loss_parts(rows: list[dict]) -> list[str]:
    """The train/* keys of the rows, 'train/loss' (the total) first."""
    keys = sorted({k for r in rows for k in r if k.startswith("train/")})
    return sorted(keys, key=lambda k: k != "train/loss")


def plot_run(rows: list[dict], out: str | Path, title: str, k: int = 20) -> Path:
    """One PNG: loss parts | valid recall@k | valid ndcg@k, each against the epoch."""
    return _save(run_figure(rows, title, k), out)


def run_figure(rows: list[dict], title: str, k: int = 20):
    """The matplotlib Figure of plot_run."""
    fig, (ax_loss, ax_r, ax_n) = _figure(3)
    values = []
    for key in loss_parts(rows):
        epochs, ys = _series(rows, lambda r: r.get(key))
        ax_loss.plot(epochs, ys, marker=".", label=key[6:])
        values += ys
    # parts an order of magnitude apart (bpr ~0.7, reg ~1e-3) on a log axis when it can
    log_y = values and min(values) > 0 and max(values) > 10 * min(values)
    ax_loss.set(title="train loss parts", xlabel="epoch", yscale="log" if log_y else "linear")
    if values:
        ax_loss.legend(fontsize="small")
    for ax, metric in ((ax_r, f"recall@{k}"), (ax_n, f"ndcg@{k}")):
        ax.plot(*_series(rows, lambda r: (r.get("valid") or {}).get(metric)), marker=".")
        ax.set(title=f"valid {metric}", xlabel="epoch")
    fig.suptitle(title)
    return fig


def plot_compare(runs: dict[str, list[dict]], out: str | Path, k: int = 20) -> Path:
    """One PNG: every run's valid recall@k | ndcg@k | total train loss on shared axes."""
    return _save(compare_figure(runs, k), out)


def compare_figure(runs: dict[str, list[dict]], k: int = 20):
    """The matplotlib Figure of plot_compare."""
    fig, axes = _figure(3)
    panels = ((f"valid recall@{k}", lambda r: (r.get("valid") or {}).get(f"recall@{k}")),
              (f"valid ndcg@{k}", lambda r: (r.get("valid") or {}).get(f"ndcg@{k}")),
              ("train loss", lambda r: r.get("train/loss")))
    for ax, (name, get) in zip(axes, panels):
        for label, rows in runs.items():
            ax.plot(*_series(rows, get), marker=".", label=label)
        ax.set(title=name, xlabel="epoch")
    if any(ln.get_xydata().size for ln in axes[0].lines):
        axes[0].legend(fontsize="small")
    return fig


def _save(fig, out: str | Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    out = Path(out)
    try:
        fig.savefig(out, format="png")
    except OSError as e:
        raise UserError(f"{out}: cannot write the PNG ({e.strerror or e})") from None
    log.info(f"wrote {out}")
    return out
