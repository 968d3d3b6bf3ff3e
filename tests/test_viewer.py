"""`launch.view`: the tree viewer's nodes and marks of the extracted data, its errors, and the page in headless
Chromium (skipped with a message where Debian's `chromium` is not installed; `.ci/run` installs it)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from rstar_jax import extract, viewer
from tests.helpers_browser import HEIGHT, WIDTH, Browser, find_chromium
from tests.helpers_trees import tree_record

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_nodes_carry_fields_and_the_extracted_data_marks():
    record = tree_record()
    view = viewer.view_tree(record, margin=0.5, per_problem=2)
    nodes = {n.tag: n for n in view.root.walk()}
    assert list(nodes) == ["0", "0.1", "0.1.1", "0.2", "0.2.1", "0.3"] and view.num_nodes == 6
    # What extract itself takes from this tree: one SFT trajectory (0.1 -> 0.1.1), a step pair (0.1 over 0.2)
    # and a final pair (the trajectory through 0.1 over the one through 0.2).
    assert len(extract.sft_records(record)) == 1
    assert [p["kind"] for p in extract.ppm_pairs(record)] == ["step", "final"]
    marks = {t: (n.sft, n.chosen, n.rejected) for t, n in nodes.items() if n.sft or n.chosen or n.rejected}
    assert marks == {"0.1": ([1], [1], []), "0.1.1": ([1], [2], []), "0.2": ([], [], [1]), "0.2.1": ([], [], [2])}
    assert (view.sft_count, view.pair_counts) == (1, {"step": 1, "final": 1})
    err = nodes["0.3"]
    assert err.error and err.output.startswith("NameError") and err.code == "<code>\nx = y\n"
    assert err.kind == "code_errors" and err.ppm is None  # a dead end is never scored by the PPM
    assert (nodes["0.1"].ppm, nodes["0.2"].ppm, nodes["0.1.1"].ppm, nodes["0"].ppm) == (0.3, -0.2, None, None)
    assert (nodes["0.1.1"].correct, nodes["0.2.1"].correct, nodes["0.1"].q, nodes["0"].visits) == (True, False, 0.8, 3)
    terminal = viewer.view_tree(tree_record(mode="terminal"), margin=0.5, per_problem=2)
    assert all(n.ppm is None for n in terminal.root.walk())  # no PPM guided the search
    test = viewer.view_tree(tree_record(mode="test"), margin=0.5, per_problem=2)  # not graded: nothing extracted
    assert not test.graded and all(not (n.sft or n.chosen or n.rejected) for n in test.root.walk())
    assert {n.tag: n.ppm for n in test.root.walk() if n.kind == "answer"} == {"0.1.1": 0.0, "0.2.1": 0.0}


def test_bad_input_names_the_flag_file_line_or_id(tmp_path):
    good = _write(tmp_path / "trees.jsonl", [tree_record("a"), tree_record("b")])
    cases = {
        "missing": (tmp_path / "typo.jsonl", None, "trees", r"typo\.jsonl: not found"),
        "empty": (_write(tmp_path / "empty.jsonl", []), None, "trees", r"empty\.jsonl holds no complete record"),
        "id": (good, ["a", "zz"], "id", r"'zz' is not in .*trees\.jsonl \(2 problems, e\.g\. a, b\)"),
    }
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(tree_record("a")) + "\n{oops\n", encoding="utf-8")
    cases["json"] = (bad_json, None, "trees", r"bad\.jsonl:2: not a JSON record")
    broken = tree_record("b")
    del broken["rstar"]["0.1"]  # 0.1.1 loses its parent
    cases["tree"] = (_write(tmp_path / "broken.jsonl", [tree_record("a"), broken]), None, "trees",
                     r"broken\.jsonl:2: record 'b': .*node '0\.1\.1' has no parent")  # fmt: skip
    for name, (path, ids, flag, pattern) in cases.items():
        with pytest.raises(viewer.TreeFileError, match=pattern) as err:
            viewer.write_viewer(path, tmp_path / f"{name}.html", ids=ids)
        assert err.value.flag == flag, name
        assert not (tmp_path / f"{name}.html").exists()


def test_launch_view_writes_the_page_or_one_error_line(tmp_path):
    trees = _write(tmp_path / "trees.jsonl", [tree_record("a"), tree_record("b")])
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    run = lambda *args: subprocess.run([sys.executable, "-m", "launch.view", *args], cwd=REPO, env=env,
                                       capture_output=True, text=True, timeout=120)  # fmt: skip
    ok = run(f"--trees={trees}", "--id=b", f"--out={tmp_path / 'b.html'}")
    assert ok.returncode == 0, ok.stderr
    page = (tmp_path / "b.html").read_text(encoding="utf-8")
    assert page.count('<section class="problem"') == 1 and 'data-id="b"' in page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # self-contained
    bad = run(f"--trees={trees}", "--id=nope", f"--out={tmp_path / 'x.html'}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --id: id 'nope' is not in {trees} (2 problems, e.g. a, b)"
    ]


@pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)"
)
def test_page_in_headless_chromium(tmp_path):
    ids = ["toy/train/gsm/000001", "toy/train/gsm/000002", "toy/train/math/000001"]
    trees = _write(tmp_path / "trees.jsonl", [tree_record(i) for i in ids])
    page = viewer.write_viewer(trees, tmp_path / "trees.html")
    with Browser.start(tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        png = image.imread(io.BytesIO(browser.screenshot()), format="png")
        assert png.shape[:2] == (HEIGHT, WIDTH)
        pixels = png[..., :3].reshape(-1, 3)
        colours, counts = np.unique((pixels * 255).astype(np.uint8), axis=0, return_counts=True)
        assert len(colours) > 50 and counts.max() < 0.95 * len(pixels), "the screenshot is blank"
        # Each problem's tree holds every node of its record.
        count = "document.querySelectorAll('section.problem[data-id=\"{}\"] details.node').length"
        assert [browser.evaluate(count.format(i)) for i in ids] == [len(tree_record()["rstar"])] * 3
        # Expanding a node shows its code: closed, the code is not visible; a click on its summary opens it.
        node = f'document.querySelector(\'section.problem[data-id="{ids[1]}"] details.node[data-tag="0.3"]\')'
        shown = f"{node}.querySelector(':scope > .body > pre.code').checkVisibility()"
        assert browser.evaluate(shown) is False
        rect = browser.evaluate(
            f"(() => {{ const s = {node}.querySelector('summary'); s.scrollIntoView({{block: 'center'}});"
            " const r = s.getBoundingClientRect(); return [r.left + 20, r.top + r.height / 2]; })()"
        )
        browser.click(*rect)
        assert browser.evaluate(f"{node}.open") is True and browser.evaluate(shown) is True
        assert browser.evaluate(f"{node}.querySelector(':scope > .body > pre.code').textContent") == "<code>\nx = y\n"
        assert "NameError" in browser.evaluate(f"{node}.querySelector(':scope > .body > pre.error').textContent")
        # Searching by id keeps the matching problems only: typed into the search box, or given in the URL.
        visible = "[...document.querySelectorAll('section.problem:not(.hidden)')].map(s => s.dataset.id)"
        browser.evaluate("window.scrollTo(0, 0); document.getElementById('search').focus()")
        browser.send("Input.insertText", {"text": "math"})
        assert browser.evaluate(visible) == [ids[2]]
        browser.open("about:blank")
        browser.open(page.as_uri() + "#search=gsm/000002")
        assert browser.evaluate(visible) == [ids[1]]
        assert browser.evaluate("document.getElementById('shown').textContent") == "1 of 3 problems"
