"""The viewer's HTML page: one self-contained file (inline CSS and JS, no network use) with a tree per problem.

    html = render_page(trees, title="round_1/trees/trees.jsonl")

Each problem is a `<section class="problem" data-id=...>`: its question, reference answer, mode, node count and
extracted data, then its tree as nested `<details class="node" data-tag=...>` elements (native collapsing; the
root starts open). A node's summary line shows its tag, terminal kind, Q, N, the PPM value when one was recorded,
its answer and the marks of the extracted data (`SFT k`, `+j` chosen / `-j` rejected in PPM pair j); expanding it
shows the step text, the code and the execution output or error, then its children. The search box keeps the
problems whose id contains the typed text (also `page.html#search=TEXT`); "expand all" / "collapse all" act on a
problem's tree. Model text is escaped, and control characters are shown as their Unicode control pictures.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

from rstar_jax.viewer.nodes import ViewNode, ViewTree

__all__ = ["render_page"]

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #fafbfc; }
header { position: sticky; top: 0; background: #24292f; color: #fff; padding: 8px 16px; z-index: 1; }
header h1 { font-size: 16px; margin: 0 0 4px; }
header input { width: 28em; padding: 3px 6px; }
header .legend span { margin-right: 10px; }
main { padding: 8px 16px; }
.problem { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; margin: 12px 0; padding: 8px 12px; }
.problem h2 { font-size: 15px; margin: 4px 0; font-family: monospace; }
.problem .meta { color: #57606a; margin: 2px 0 6px; }
.problem .question { white-space: pre-wrap; margin: 4px 0; }
details.node { margin-left: 18px; border-left: 1px dotted #afb8c1; padding-left: 6px; }
details.node > summary { cursor: pointer; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tag { font-family: monospace; color: #57606a; }
.preview { color: #24292f; font-family: monospace; }
.badge { display: inline-block; border-radius: 8px; padding: 0 6px; margin-left: 4px; font-size: 12px;
  background: #eaeef2; color: #1d2430; }
.kind-answer { background: #ddf4ff; } .kind-code_errors, .kind-too_deep { background: #ffebe9; }
.kind-exhausted { background: #fff8c5; }
.correct { background: #aceebb; } .wrong { background: #ffcecb; }
.sft { background: #8250df; color: #fff; } .chosen { background: #1a7f37; color: #fff; }
.rejected { background: #cf222e; color: #fff; }
.body { margin: 4px 0 4px 12px; }
.body h4 { margin: 4px 0 0; font-size: 12px; color: #57606a; font-weight: normal; }
pre { margin: 2px 0; padding: 4px 6px; background: #f6f8fa; border-radius: 4px; white-space: pre-wrap;
  word-break: break-all; max-height: 24em; overflow: auto; }
pre.error { background: #ffebe9; }
.hidden { display: none; }
"""

_JS = """
function filterProblems() {
  const query = document.getElementById('search').value.trim().toLowerCase();
  let shown = 0;
  const problems = document.querySelectorAll('section.problem');
  for (const p of problems) {
    const keep = !query || p.dataset.id.toLowerCase().includes(query);
    p.classList.toggle('hidden', !keep);
    shown += keep;
  }
  document.getElementById('shown').textContent = shown + ' of ' + problems.length + ' problems';
}
function setAll(button, open) {
  for (const d of button.closest('section').querySelectorAll('details.node')) d.open = open;
}
window.addEventListener('DOMContentLoaded', () => {
  const search = document.getElementById('search');
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has('search')) search.value = hash.get('search');
  search.addEventListener('input', filterProblems);
  filterProblems();
});
"""

_CONTROL = {c: chr(0x2400 + c) for c in range(32) if chr(c) not in "\n\t"} | {0x7F: "\u2421"}


def _esc(text: object) -> str:
    return html.escape(str(text).translate(_CONTROL), quote=True)


def _badge(cls: str, text: str, title: str = "") -> str:
    tip = f' title="{_esc(title)}"' if title else ""
    return f'<span class="badge {cls}"{tip}>{_esc(text)}</span>'


def _summary(node: ViewNode) -> str:
    parts = [f'<span class="tag">{_esc(node.tag)}</span>', _badge(f"kind-{node.kind}", node.kind, "terminal kind")]
    parts.append(_badge("q", f"Q {node.q:+.3f}", "Q value: mean backed-up value"))
    parts.append(_badge("n", f"N {node.visits}", "visit count"))
    if node.ppm is not None:
        parts.append(_badge("ppm", f"PPM {node.ppm:+.3f}", "PPM value of the step when it was created"))
    if node.kind == "answer":
        verdict = {True: ("correct", "correct"), False: ("wrong", "wrong"), None: ("", "not graded")}[node.correct]
        parts.append(_badge(verdict[0], f"answer {node.answer}", verdict[1]))
    parts += [_badge("sft", f"SFT {k}", "on SFT trajectory k") for k in node.sft]
    parts += [_badge("chosen", f"+{j}", f"chosen side of PPM pair {j}") for j in node.chosen]
    parts += [_badge("rejected", f"-{j}", f"rejected side of PPM pair {j}") for j in node.rejected]
    lines = [line.strip() for line in (node.code or node.text).splitlines()]
    first = next((line for line in lines if line and not re.fullmatch(r"<[^<>]*>", line)), "")
    parts.append(f'<span class="preview">{_esc(first[:120])}</span>')
    return " ".join(parts)


def _node(node: ViewNode, out: list[str]) -> None:
    is_open = " open" if node.tag == "0" else ""
    out.append(f'<details class="node" data-tag="{_esc(node.tag)}" data-kind="{_esc(node.kind)}"{is_open}>')
    out.append(f'<summary>{_summary(node)}</summary><div class="body">')
    if node.text:
        out.append(f'<h4>step text</h4><pre class="text">{_esc(node.text)}</pre>')
    if node.code:
        out.append(f'<h4>code</h4><pre class="code">{_esc(node.code)}</pre>')
    if node.output is not None:
        label, cls = ("error", "error") if node.error else ("output", "output")
        out.append(f'<h4>{label}</h4><pre class="{cls}">{_esc(node.output)}</pre>')
    for child in node.children:
        _node(child, out)
    out.append("</div></details>")


def _problem(i: int, tree: ViewTree, out: list[str]) -> None:
    reference = tree.reference if tree.reference is not None else "(not given: test mode)"
    pairs = tree.pair_counts
    data = f"SFT trajectories {tree.sft_count}, PPM pairs {pairs['step']} step + {pairs['final']} final"
    meta = [f"mode {tree.mode}", f"rollouts {tree.rollouts}", f"{tree.num_nodes} nodes",
            f"best answer {tree.best_answer}", data if tree.graded else "test mode: nothing extracted"]  # fmt: skip
    out.append(f'<section class="problem" id="problem-{i}" data-id="{_esc(tree.id)}">')
    out.append(f"<h2>{_esc(tree.id)}</h2>")
    out.append(f'<div class="question">{_esc(tree.question)}</div>')
    out.append(f'<div class="meta">reference answer {_esc(json.dumps(reference, ensure_ascii=False))}; ')
    out.append(f"{_esc('; '.join(meta))}</div>")
    out.append('<button onclick="setAll(this, true)">expand all</button> ')
    out.append('<button onclick="setAll(this, false)">collapse all</button>')
    _node(tree.root, out)
    out.append("</section>")


def render_page(trees: Sequence[ViewTree], *, title: str) -> str:
    """The whole page for `trees` (module docstring)."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_esc(title)}</title>"]
    out += [f"<style>{_CSS}</style>", f"<script>{_JS}</script></head><body>", "<header>"]
    out.append(f"<h1>Search trees: {_esc(title)}</h1>")
    out.append('<input id="search" type="search" placeholder="search problems by id" autocomplete="off"> ')
    out.append(f'<span id="shown">{len(trees)} of {len(trees)} problems</span>')
    out.append('<div class="legend">')
    for cls, text in (("sft", "SFT k: on SFT trajectory k"), ("chosen", "+j: chosen in PPM pair j"),
                      ("rejected", "-j: rejected in PPM pair j"), ("correct", "correct answer"),
                      ("wrong", "wrong answer")):  # fmt: skip
        out.append(f"<span>{_badge(cls, text)}</span>")
    out.append("</div></header><main>")
    for i, tree in enumerate(trees):
        _problem(i, tree, out)
    out.append("</main></body></html>\n")
    return "\n".join(out)
