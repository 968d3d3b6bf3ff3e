"""python -m launch.view --trees=FILE [--id=ID ...] --out=trees.html

Writes a static, self-contained HTML page (inline CSS and JS, no network use) showing the search trees of a tree
file (`<workdir>/round_<r>/trees/trees.jsonl`, or an evaluation's `round_<r>/eval/*.trees.jsonl`): a collapsible
tree per problem, each node with its step text, code, execution output or error, Q, N, PPM value (when one was
recorded) and terminal kind, and the SFT trajectories and PPM pairs that `rstar_jax.extract` takes from the tree
marked on their nodes. `--id` (repeatable) keeps only those problems; the page's search box filters by id.

A missing file, a line that is not a JSON record, a malformed tree, an empty file or an `--id` the file does not
hold ends with one line `error: ...` naming the flag, the file and the line or id, and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from rstar_jax import cli, viewer
from rstar_jax.workdir import check_writable_dir

_TREES = flags.DEFINE_string("trees", None, "tree file (JSONL, one search tree per line)")
_IDS = flags.DEFINE_multi_string("id", [], "problem id to show (repeatable); default: every problem of the file")
_OUT = flags.DEFINE_string("out", "trees.html", "the HTML file to write")
_MARGIN = flags.DEFINE_float("pair_margin", viewer.PAIR_MARGIN, "PPM pair Q margin of the marked pairs")
_PER_PROBLEM = flags.DEFINE_integer("sft_per_problem", viewer.SFT_PER_PROBLEM, "SFT trajectories marked per problem")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _TREES.value:
        raise cli.UsageExit("--trees=FILE is required (e.g. --trees=workdir/tiny/round_1/trees/trees.jsonl)")
    if Path(_OUT.value).is_dir():
        raise cli.UsageExit(f"--out={_OUT.value}: is a directory; give the HTML file to write, e.g. --out=trees.html")
    check_writable_dir(Path(_OUT.value).expanduser().resolve().parent, f"--out={_OUT.value}")
    try:
        out = viewer.write_viewer(
            _TREES.value, _OUT.value, ids=_IDS.value, margin=_MARGIN.value, per_problem=_PER_PROBLEM.value
        )
    except viewer.TreeFileError as err:
        raise cli.UsageExit(f"--{err.flag}: {err}") from None
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
