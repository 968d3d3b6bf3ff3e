"""The self-evolution report: per-round and cumulative markdown, JSON and PNG plots (paper Tables 2, 3, 4, 6).

    paths = write_round_report(report_dir, metrics)          # round_<r>.json / .md / .png
    paths = write_cumulative_report(report_dir, all_rounds)  # report.md / report.json / report_<table>.png

`metrics` is the dict the round orchestration writes; every count is ``{"correct": int, "total": int}`` and every
table maps band names (``gsm``/``math``/``olympiad`` on the toy domain, possibly only ``all`` on real data) to a
count. Any table may be missing or null: it renders as "—". A table without an ``all`` band gets one summed from
its bands (the bands partition the problems). Optional per-problem data makes the comparisons paired:
``per_problem`` maps "coverage" (training problems) and each evaluation method (held-out problems) to
``{problem_id: bool}``, and ``problem_bands`` maps problem ids to their band. `effects` checks issue 14's claims
(a)-(d) at toy scale, each with a 95 % paired-bootstrap interval (`intervals`) when per-problem data is present.
Plots use the object-oriented matplotlib API (`Figure` + `FigureCanvasAgg`): no global pyplot state, nothing to close.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rstar_jax.evolve.intervals import Arm, Effect, compare, markdown_rows
from rstar_jax.workdir import atomic_write_bytes

__all__ = ["TABLES", "METHODS", "Effect", "validate_metrics", "effects", "write_round_report",
           "write_cumulative_report"]  # fmt: skip

DASH = "—"
TABLES: dict[str, str] = {
    "coverage": "Table 2 — training coverage: problems with ≥ 1 correct trajectory in the round's trees",
    "policy_greedy": "Table 3 — the round's policy, greedy pass@1 (held-out)",
    "ppm_fixed_policy": "Table 4 — MCTS with the round's PPM and the round-1 policy fixed (held-out)",
    "system": "Table 6 — the round's policy + PPM, MCTS (held-out)",
}
_SHORT = {"coverage": "coverage (T2)", "policy_greedy": "greedy (T3)", "ppm_fixed_policy": "PPM, fixed policy (T4)",
          "system": "system (T6)"}  # fmt: skip
METHODS: dict[str, str] = {"greedy": "greedy", "majority_vote": "majority vote", "best_of_n": "best-of-N",
                           "mcts_ppm": "MCTS + PPM"}  # fmt: skip

_ARM_NAMES = {"coverage": "coverage", "ppm_fixed_policy": "MCTS + PPM (round-1 policy)"}
Count = tuple[int, int]


def _check_table(r: int, key: str, table: Any) -> None:
    if table is None:
        return
    if not isinstance(table, Mapping):
        raise ValueError(f"round {r}: {key} must be a mapping band -> count, or null; got {type(table).__name__}")
    for band, count in table.items():
        where = f"round {r}: {key}.{band}"
        if count is None:
            continue
        if not isinstance(count, Mapping) or "correct" not in count or "total" not in count:
            raise ValueError(f"{where}: a count must be {{'correct': int, 'total': int}}; got {count!r}")
        c, t = count["correct"], count["total"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (c, t)):
            raise ValueError(f"{where}: correct and total must be ints; got {c!r}, {t!r}")
        if c < 0 or t < 0:
            raise ValueError(f"{where}: negative count {c}/{t}")
        if c > t:
            raise ValueError(f"{where}: correct {c} > total {t}")


def _method_tables(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The method tables of `metrics["methods"]` (every key but "samples"), the known methods first."""
    methods = metrics.get("methods") or {}
    names = [m for m in METHODS if m in methods] + [m for m in methods if m not in METHODS and m != "samples"]
    return {m: methods[m] for m in names}


def _check_per_problem(r: int, metrics: Mapping[str, Any]) -> None:
    """`per_problem` maps "coverage" and method names to `{problem_id: bool}`; `problem_bands` ids to band names."""
    for key, kind in (("per_problem", "a mapping name -> {problem_id: bool}"), ("problem_bands", "{problem_id: band}")):
        value = metrics.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"round {r}: {key} must be {kind}, or null; got {type(value).__name__}")
    for name, outcomes in (metrics.get("per_problem") or {}).items():
        if outcomes is None:
            continue
        if not isinstance(outcomes, Mapping):
            raise ValueError(f"round {r}: per_problem.{name} must map problem ids to bools; got {outcomes!r}")
        bad = next(((i, ok) for i, ok in outcomes.items() if not isinstance(i, str) or not isinstance(ok, bool)), None)
        if bad is not None:
            raise ValueError(f"round {r}: per_problem.{name}: {bad[0]!r} -> {bad[1]!r} is not problem id -> bool")


def validate_metrics(metrics: Mapping[str, Any]) -> int:
    """Checks one round's metrics against the schema and returns its round number.

    Raises ValueError naming the round and the key: no "round", a non-int round, a table that is not a mapping,
    a malformed count, correct > total, per-problem outcomes that are not bools, or a ppm_pair_accuracy outside
    [0, 1].
    """
    if not isinstance(metrics, Mapping) or "round" not in metrics:
        raise ValueError("round ?: metrics missing key 'round'")
    r = metrics["round"]
    if isinstance(r, bool) or not isinstance(r, int):
        raise ValueError(f"round {r!r}: key 'round' must be an int")
    for key in TABLES:
        _check_table(r, key, metrics.get(key))
    methods = metrics.get("methods")
    if methods is not None and not isinstance(methods, Mapping):
        raise ValueError(f"round {r}: methods must be a mapping or null")
    for name, table in _method_tables(metrics).items():
        _check_table(r, f"methods.{name}", table)
    _check_per_problem(r, metrics)
    links = metrics.get("links")
    if links is not None and not (isinstance(links, Mapping) and all(isinstance(v, str) for v in links.values())):
        raise ValueError(f"round {r}: links must map labels to file names, or null; got {links!r}")
    pair = metrics.get("ppm_pair_accuracy")
    if pair is not None and (isinstance(pair, bool) or not isinstance(pair, int | float) or not 0 <= pair <= 1):
        raise ValueError(f"round {r}: ppm_pair_accuracy must be a fraction in [0, 1] or null; got {pair!r}")
    return r


def _sorted_rounds(rounds: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    by_round: dict[int, Mapping[str, Any]] = {}
    for m in rounds:
        r = validate_metrics(m)
        if r in by_round:
            raise ValueError(f"round {r}: key 'round' appears twice in rounds")
        by_round[r] = m
    return [by_round[r] for r in sorted(by_round)]


def _count(table: Mapping[str, Any] | None, band: str) -> Count | None:
    """The (correct, total) of `band` in `table`; "all" is summed from the bands when the table lacks it."""
    if not table:
        return None
    count = table.get(band)
    if count is not None:
        return count["correct"], count["total"]
    if band != "all" or "all" in table:
        return None
    parts = list(table.values())
    if not parts or any(p is None for p in parts):
        return None
    return sum(p["correct"] for p in parts), sum(p["total"] for p in parts)


def _pct(count: Count | None) -> Fraction | None:
    """Exact accuracy in percent (None without data), so thresholds like "+15 points" compare exactly."""
    return None if count is None or count[1] == 0 else Fraction(100 * count[0], count[1])


def _fmt_pct(p: Fraction | None) -> str:
    return DASH if p is None else f"{float(p):.1f}%"


def _cell(count: Count | None) -> str:
    return DASH if count is None else f"{_fmt_pct(_pct(count))} ({count[0]}/{count[1]})"


def _keys(mappings: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """The keys of `mappings` (None for none) in order of first appearance."""
    seen: dict[str, None] = {}
    for mapping in mappings:
        seen.update((k, None) for k in (mapping or {}))
    return list(seen)


def _bands(tables: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """The band names of `tables` in order of first appearance, "all" always present and last."""
    return [*(b for b in _keys(tables) if b != "all"), "all"]


def _arm(m: Mapping[str, Any], key: str, band: str, samples_label: bool = False) -> Arm:
    """Round `m`'s side of a comparison: `key`'s outcomes (restricted to `band`) and its `band` count.

    `key` is "coverage" or an evaluation method; "greedy" and "mcts_ppm" fall back to the Table 3 and Table 6 counts.
    """
    fallback = {"greedy": "policy_greedy", "mcts_ppm": "system"}
    if key in ("coverage", "ppm_fixed_policy"):
        table = m.get(key)
    else:
        table = _method_tables(m).get(key) or m.get(fallback.get(key, ""))
    outcomes = (m.get("per_problem") or {}).get(key)
    if outcomes is not None and band != "all":
        bands = m.get("problem_bands") or {}
        outcomes = {i: ok for i, ok in outcomes.items() if bands.get(i) == band}
    samples = (m.get("methods") or {}).get("samples")
    name = _method_label(key, samples) if samples_label else _ARM_NAMES.get(key, METHODS.get(key, key))
    where = "" if band == "all" else f" [{band}]"
    return Arm(f"round {m.get('round', '?')} {name}{where}", outcomes, _count(table, band))


def effects(rounds: Sequence[Mapping[str, Any]]) -> list[Effect]:
    """Issue 14's effects (a)-(d), each a paired comparison of the first and last rounds, or within the last.

    (a) coverage of the training problems, last > first, overall and in the hardest band (the coverage tables'
    last band); (b) greedy pass@1, last >= first + 10 points; (c) last round MCTS+PPM >= greedy + 10, >= majority
    vote, >= best-of-N; (d) MCTS with the round-1 policy: last round's PPM beats round 1's (round 1's
    ppm_fixed_policy, else its mcts_ppm: the same policy and the round-1 PPM).
    """
    ordered = _sorted_rounds(rounds)
    first, last = (ordered[0], ordered[-1]) if ordered else ({}, {})
    rf, rl = first.get("round", "?"), last.get("round", "?")
    alone = "" if len(ordered) >= 2 else "needs ≥ 2 rounds"
    hardest = ([b for b in _bands(m.get("coverage") for m in ordered) if b != "all"] or ["all"])[-1]
    own = _arm(first, "ppm_fixed_policy", "all")
    fixed_first = "ppm_fixed_policy" if own.count or own.outcomes is not None else "mcts_ppm"
    last_arm = lambda key, band="all": _arm(last, key, band, samples_label=True)
    return [
        compare(f"(a) Table 2: training coverage, round {rl} > round {rf}", _arm(last, "coverage", "all"),
                _arm(first, "coverage", "all"), strict=True, note=alone),
        compare(f"(a) Table 2: training coverage in the hardest band ({hardest}), round {rl} > round {rf}",
                _arm(last, "coverage", hardest), _arm(first, "coverage", hardest), strict=True, note=alone),
        compare(f"(b) Table 3: greedy pass@1, round {rl} ≥ round {rf} + 10 points", _arm(last, "greedy", "all"),
                _arm(first, "greedy", "all"), threshold=10, note=alone),
        compare(f"(c) round {rl}: MCTS+PPM ≥ greedy + 10 points", last_arm("mcts_ppm"), last_arm("greedy"),
                threshold=10),
        compare(f"(c) round {rl}: MCTS+PPM ≥ majority vote", last_arm("mcts_ppm"), last_arm("majority_vote")),
        compare(f"(c) round {rl}: MCTS+PPM ≥ best-of-N (same sampled trajectories)", last_arm("mcts_ppm"),
                last_arm("best_of_n")),
        compare(f"(d) Table 4: round-1 policy, MCTS with round {rl}'s PPM > with round {rf}'s PPM",
                _arm(last, "ppm_fixed_policy", "all"), _arm(first, fixed_first, "all"), strict=True, note=alone),
    ]  # fmt: skip


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _num(v: Any, unit: str = "") -> str:
    if v is None:
        return DASH
    return f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def _method_label(name: str, samples: Any) -> str:
    return f"best-of-{samples}" if name == "best_of_n" and samples else METHODS.get(name, name)


def _round_markdown(m: Mapping[str, Any]) -> str:
    r, data, secs = m["round"], m.get("data") or {}, m.get("seconds") or {}
    pair = m.get("ppm_pair_accuracy")
    lines = [f"# Self-evolution round {r}", ""]
    lines += [f"- data: {', '.join(f'{k} {_num(v)}' for k, v in data.items()) or DASH}"]
    total = sum(v for v in secs.values() if isinstance(v, int | float))
    lines += [f"- seconds: {', '.join(f'{k} {_num(v)}' for k, v in secs.items()) or DASH}; total {total:.1f}"]
    lines += [f"- PPM held-out pair accuracy: {DASH if pair is None else f'{100 * pair:.1f}%'}", ""]
    lines += ["## Accuracy by band", "", *(f"- {_SHORT[k]}: {v}" for k, v in TABLES.items()), ""]
    bands = _bands(m.get(k) for k in TABLES)
    lines += _md_table(["band", *_SHORT.values()], ([b, *(_cell(_count(m.get(k), b)) for k in TABLES)] for b in bands))
    methods, samples = _method_tables(m), (m.get("methods") or {}).get("samples")
    lines += [f"## Methods (held-out, {samples or DASH} sampled trajectories each)", ""]
    names, bands = list(methods) or list(METHODS), _bands(methods.values())
    rows = ([_method_label(n, samples), *(_cell(_count(methods.get(n), b)) for b in bands)] for n in names)
    links = [f"- [{label}]({name})" for label, name in (m.get("links") or {}).items()]
    return "\n".join(lines + _md_table(["method", *bands], rows) + (["## Files", "", *links, ""] if links else []))


def _cumulative_markdown(ordered: Sequence[Mapping[str, Any]], found: Sequence[Effect]) -> str:
    cols = [f"round {m['round']}" for m in ordered]
    lines = ["# Self-evolution report", "", f"Rounds: {', '.join(str(m['round']) for m in ordered) or DASH}", ""]
    lines += ["## Paper effects at toy scale", ""]
    lines += _md_table(*markdown_rows(found))
    for key, title in TABLES.items():
        bands = _bands(m.get(key) for m in ordered)
        lines += [f"## {title}", ""]
        lines += _md_table(["band", *cols], ([b, *(_cell(_count(m.get(key), b)) for m in ordered)] for b in bands))
    names = _keys(_method_tables(m) for m in ordered) or list(METHODS)
    lines += ["## Methods, all held-out problems (equal numbers of sampled trajectories)", ""]
    rows = [["samples", *(_num((m.get("methods") or {}).get("samples")) for m in ordered)]]
    rows += [[METHODS.get(n, n), *(_cell(_count(_method_tables(m).get(n), "all")) for m in ordered)] for n in names]
    lines += _md_table(["method", *cols], rows)
    pair = [m.get("ppm_pair_accuracy") for m in ordered]
    rows = [["PPM held-out pair accuracy", *(DASH if p is None else f"{100 * p:.1f}%" for p in pair)]]
    for section, unit in (("data", ""), ("seconds", " s")):
        keys = _keys(m.get(section) for m in ordered)
        rows += [[f"{section}: {k}", *(_num((m.get(section) or {}).get(k), unit) for m in ordered)] for k in keys]
    lines += ["## PPM, data and time", "", *_md_table(["", *cols], rows)]
    return "\n".join(lines)


def _figure(n_axes: int) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(6.4 * n_axes, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, n_axes, i + 1) for i in range(n_axes)]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _style(ax: Any, title: str, has_data: bool) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    if has_data:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")


def _bars(ax: Any, groups: Sequence[str], series: Mapping[str, Sequence[Fraction | None]], title: str) -> None:
    """Grouped bars: one group per entry of `groups`, one bar per series; missing values leave a gap."""
    width = 0.8 / max(1, len(series))
    has_data = False
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        hs = [float("nan") if v is None else float(v) for v in values]
        has_data |= any(v is not None for v in values)
        ax.bar(xs, hs, width, label=label)
    ax.set_xticks(range(len(groups)), list(groups))
    _style(ax, title, has_data)


def _lines(ax: Any, xs: Sequence[int], series: Mapping[str, Sequence[Fraction | None]], title: str) -> None:
    """One line per series over the rounds `xs`; a missing value breaks the line."""
    has_data = False
    for label, values in series.items():
        has_data |= any(v is not None for v in values)
        ax.plot(xs, [float("nan") if v is None else float(v) for v in values], marker="o", label=label)
    ax.set_xticks(list(xs), [str(x) for x in xs])
    ax.set_xlabel("round")
    _style(ax, title, has_data)


def _round_png(m: Mapping[str, Any]) -> bytes:
    fig, (left, right) = _figure(2)
    methods, samples = _method_tables(m), (m.get("methods") or {}).get("samples")
    bands = _bands(methods.values())
    series = {_method_label(n, samples): [_pct(_count(t, b)) for b in bands] for n, t in methods.items()}
    _bars(left, bands, series, f"Round {m['round']}: methods (held-out, {samples or DASH} samples)")
    bands = _bands(m.get(k) for k in TABLES)
    series = {_SHORT[k]: [_pct(_count(m.get(k), b)) for b in bands] for k in TABLES}
    _bars(right, bands, series, f"Round {m['round']}: coverage and accuracy by band")
    return _png(fig)


def _cumulative_pngs(ordered: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    xs = [m["round"] for m in ordered]
    out = {}
    for key, title in TABLES.items():
        fig, (ax,) = _figure(1)
        bands = _bands(m.get(key) for m in ordered)
        _lines(ax, xs, {b: [_pct(_count(m.get(key), b)) for m in ordered] for b in bands}, title)
        out[key] = _png(fig)
    fig, (ax,) = _figure(1)
    names = _keys(_method_tables(m) for m in ordered)
    series = {METHODS.get(n, n): [_pct(_count(_method_tables(m).get(n), "all")) for m in ordered] for n in names}
    _lines(ax, xs, series, "Methods per round, all held-out problems")
    out["methods"] = _png(fig)
    return out


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_round_report(report_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """Writes ``round_<r>.json`` (the metrics), ``round_<r>.md`` and ``round_<r>.png``; returns them by suffix."""
    r = validate_metrics(metrics)
    root = Path(report_dir)
    root.mkdir(parents=True, exist_ok=True)
    return {
        "json": atomic_write_bytes(root / f"round_{r}.json", _json_bytes(metrics)),
        "md": atomic_write_bytes(root / f"round_{r}.md", (_round_markdown(metrics) + "\n").encode("utf-8")),
        "png": atomic_write_bytes(root / f"round_{r}.png", _round_png(metrics)),
    }


def write_cumulative_report(report_dir: str | os.PathLike, rounds: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
    """Writes ``report.md``, ``report.json`` and ``report_<table>.png`` over all `rounds` (sorted by round).

    Returns the paths under "md", "json" and the plot keys: the `TABLES` keys (Tables 2, 3, 4, 6) and "methods".
    report.json holds the rounds' metrics, the accuracies per table/band/round and the effects.
    """
    ordered = _sorted_rounds(rounds)
    found = effects(ordered)
    acc = lambda c: None if _pct(c) is None else c[0] / c[1]
    per_round = lambda table_of, band: {str(m["round"]): acc(_count(table_of(m), band)) for m in ordered}
    tables = {k: {b: per_round(lambda m, k=k: m.get(k), b) for b in _bands(m.get(k) for m in ordered)} for k in TABLES}
    names = _keys(_method_tables(m) for m in ordered)
    methods = {n: per_round(lambda m, n=n: _method_tables(m).get(n), "all") for n in names}
    summary = {"rounds": list(ordered), "accuracy": {**tables, "methods_all": methods},
               "effects": [asdict(e) | {"measured": e.measured} for e in found]}  # fmt: skip
    root = Path(report_dir)
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "md": atomic_write_bytes(root / "report.md", (_cumulative_markdown(ordered, found) + "\n").encode("utf-8")),
        "json": atomic_write_bytes(root / "report.json", _json_bytes(summary)),
    }
    for key, png in _cumulative_pngs(ordered).items():
        paths[key] = atomic_write_bytes(root / f"report_{key}.png", png)
    return paths
