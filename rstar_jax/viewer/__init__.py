"""A static HTML viewer of search-tree files: `python -m launch.view --trees=FILE [--id=...] --out=trees.html`.

    from rstar_jax import viewer
    viewer.write_viewer("round_1/trees/trees.jsonl", "trees.html", ids=["toy/train/gsm/000002"])

`load_trees` reads a tree file (`rstar_jax/search/records.py`), `nodes.view_tree` turns each record into the
viewer's nodes with the extracted SFT trajectories and PPM pairs marked, `page.render_page` writes them as one
self-contained HTML file. Bad input raises `TreeFileError` naming the file, the line or the id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rstar_jax.config import EvolveConfig
from rstar_jax.search import read_records
from rstar_jax.viewer.nodes import ViewNode, ViewTree, view_tree
from rstar_jax.viewer.page import render_page
from rstar_jax.workdir import atomic_write_text

__all__ = ["TreeFileError", "ViewNode", "ViewTree", "load_trees", "render_page", "view_tree", "write_viewer"]

# The rounds' defaults for the extraction the viewer marks (`config.evolve`).
PAIR_MARGIN = EvolveConfig().pair_margin
SFT_PER_PROBLEM = EvolveConfig().sft_per_problem


class TreeFileError(ValueError):
    """A tree file that cannot be shown: missing, not JSONL records, empty, or without a requested id. `flag` is
    the command-line flag the error is about (`trees` or `id`)."""

    def __init__(self, message: str, flag: str = "trees"):
        super().__init__(message)
        self.flag = flag


def load_trees(path: str | os.PathLike, ids: Sequence[str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of every complete record of `path`, or of the records of `ids` in that order."""
    path = Path(path)
    if not path.is_file():
        raise TreeFileError(f"tree file {path}: {'is a directory' if path.is_dir() else 'not found'}")
    try:
        records = read_records(path)
    except ValueError as err:  # names the file and the line
        raise TreeFileError(str(err)) from None
    for line, record in enumerate(records, start=1):
        if not isinstance(record, dict) or "id" not in record:
            raise TreeFileError(f"{path}:{line}: not a tree record (a JSON object with 'id' and 'rstar')")
    if not records:
        raise TreeFileError(f"tree file {path} holds no complete record")
    numbered = list(enumerate(records, start=1))
    if not ids:
        return numbered
    by_id = {str(r["id"]): (line, r) for line, r in numbered}
    missing = [i for i in ids if i not in by_id]
    if missing:
        some = ", ".join(list(by_id)[:3])
        raise TreeFileError(f"id {missing[0]!r} is not in {path} ({len(by_id)} problems, e.g. {some})", flag="id")
    return [by_id[i] for i in ids]


def write_viewer(
    trees_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ids: Sequence[str] | None = None,
    title: str | None = None,
    margin: float = PAIR_MARGIN,
    per_problem: int = SFT_PER_PROBLEM,
) -> Path:
    """Writes the viewer page of `trees_path` (only the problems `ids`, if given) to `out`, atomically."""
    views = []
    for line, record in load_trees(trees_path, ids):
        try:
            views.append(view_tree(record, margin=margin, per_problem=per_problem))
        except (ValueError, KeyError, TypeError) as err:
            raise TreeFileError(f"{trees_path}:{line}: record {record.get('id')!r}: {err}") from None
    return atomic_write_text(out, render_page(views, title=title or str(trees_path)))
