"""What the round report links, written next to it in `round_<r>/report/`: training curves and tree viewer pages.

    links = write_round_assets(round_dir, r, trees=[...tree files], margin=0.5, per_problem=2, sample=6)
    # {"training curves (policy SFT, PPM)": "round_1_training.png", "search trees, trees.jsonl (...)": "trees.html"}

Training curves: the loss (training and held-out) of the round's policy SFT and PPM, and the PPM's pair accuracy,
against the step, read from each job's `metrics.jsonl` (`rstar_jax/train/metrics_log.py`; a resumed job's log
holds each step once). Tree pages: `rstar_jax.viewer` pages of `sample` problems of each tree file (the round's
training trees and its evaluation's MCTS trees), evenly spaced in file order, so every difficulty band of the
toy's band-ordered files appears. The links map a label to a path relative to the report directory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rstar_jax import viewer
from rstar_jax.search import read_records
from rstar_jax.workdir import RoundDir, atomic_write_bytes

__all__ = ["sample_ids", "training_curves_png", "write_round_assets"]


_LOSSES = (("loss", "loss", "C0"), ("eval_loss", "held-out loss", "C1"))  # (metric, label, colour)
_ACCURACIES = (("accuracy", "pair accuracy", "C2"), ("eval_accuracy", "held-out pair accuracy", "C3"))


def _logged(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_curves_png(runs: dict[str, Path]) -> bytes | None:
    """One panel per training job (`{title: its metrics.jsonl}`): loss and held-out loss against the step, and
    pair accuracy (training batches and held-out pairs) on a second axis where the job logged it. None when no
    job logged anything."""
    logs = {title: _logged(path) for title, path in runs.items()}
    logs = {title: records for title, records in logs.items() if records}
    if not logs:
        return None
    fig = Figure(figsize=(6.4 * len(logs), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, (title, records) in enumerate(logs.items()):
        ax = fig.add_subplot(1, len(logs), i + 1)
        handles = []
        for key, label, colour in _LOSSES:
            points = [(x["step"], x[key]) for x in records if key in x]
            if points:
                handles += ax.plot(*zip(*points, strict=True), marker=".", color=colour, label=label)
        accuracy = {k: [(x["step"], x[k]) for x in records if k in x] for k in ("accuracy", "eval_accuracy")}
        if any(accuracy.values()):
            twin = ax.twinx()
            twin.set_ylim(0, 1)
            twin.set_ylabel("pair accuracy")
            for key, label, colour in _ACCURACIES:
                if accuracy[key]:
                    xy = zip(*accuracy[key], strict=True)
                    handles += twin.plot(*xy, linestyle="--", marker=".", color=colour, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(handles=handles, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def sample_ids(ids: Sequence[str], n: int) -> list[str]:
    """`n` of `ids` evenly spaced in their order (all of them when there are at most `n`)."""
    if len(ids) <= n:
        return list(ids)
    return [ids[i * len(ids) // n] for i in range(n)]


def write_round_assets(
    round_dir: RoundDir, r: int, *, trees: Sequence[Path], margin: float, per_problem: int, sample: int
) -> dict[str, str]:
    """Writes round `r`'s training curves and the viewer pages of `sample` problems of each tree file in
    `trees` into `round_dir.report`; returns the links `{label: file name}` (module docstring)."""
    out = round_dir.report
    out.mkdir(parents=True, exist_ok=True)
    links: dict[str, str] = {}
    runs = {f"round {r} policy SFT": round_dir.sft / "run", f"round {r} PPM": round_dir.ppm / "run"}
    png = training_curves_png({title: run / "metrics.jsonl" for title, run in runs.items()})
    if png is not None:
        links["training curves (policy SFT, PPM)"] = atomic_write_bytes(out / f"round_{r}_training.png", png).name
    for path in trees if sample > 0 else ():
        if not path.is_file():
            continue
        ids = [str(x["id"]) for x in read_records(path)]
        if not ids:
            continue
        name = path.name.removesuffix(".jsonl").replace(".", "_") + ".html"
        if path.parent == round_dir.eval:
            name = f"eval_{name}"
        chosen = sample_ids(ids, sample)
        page = viewer.write_viewer(path, out / name, ids=chosen, margin=margin, per_problem=per_problem,
                                   title=f"round {r}: {path.parent.name}/{path.name}")  # fmt: skip
        where = "evaluation" if path.parent == round_dir.eval else "search"
        links[f"{where} trees, {path.name} ({len(chosen)} of {len(ids)} problems)"] = page.name
    return links
