"""Paper Table 8 at toy scale: a round's PPM against an ORM and a PQM trained on the same round's data, each one
guiding the same test-time MCTS of the round's policy on the held-out problems.

    python -m launch.ablate --config=configs/tiny.py --config.workdir=workdir/tiny --round=4

On round r of a workdir whose trees, extract, sft and ppm stages are finished (`evolve.run.ablate` opens it):
- stages `round_<r>/orm` and `round_<r>/pqm` (`rounds.train_ppm` with `Kind.ORM` / `Kind.PQM`): an outcome reward
  model (Bradley–Terry on `data/orm.json`: correct vs wrong full trajectories) and a Q-value model (regression on
  the Q values of `data/pqm.json`), each from the round's policy with a fresh value head and the `ppm` section's
  training settings, exactly as the PPM was trained;
- stage `round_<r>/ablation`: test-mode MCTS on the held-out problems (the first `evolve.eval_problems`, 0 = all)
  with `evolve.eval_samples` rollouts, the round's policy at `search.temperature` and the same seeds, guided by
  the PPM, the PQM and the ORM in turn (`evaluate.guided_mcts`): `ablation/mcts_{ppm,pqm,orm}.json`;
- `ablation/table8.md` and `table8.json`: each reward model's accuracy per band, and the PPM's paired
  differences to the PQM and the ORM with 95 % paired-bootstrap intervals (`intervals.compare`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from absl import logging

from rstar_jax.config import ConfigError, to_dict
from rstar_jax.evolve import evaluate as evaluation
from rstar_jax.evolve import rounds
from rstar_jax.evolve.context import RoundContext
from rstar_jax.evolve.intervals import Arm, Effect, compare, markdown_rows
from rstar_jax.evolve.stages import digest, plain_inputs
from rstar_jax.train import Kind
from rstar_jax.workdir import atomic_write_text, write_json

__all__ = ["MODELS", "reward_ablation", "table8_markdown"]

MODELS = (Kind.PPM, Kind.PQM, Kind.ORM)
"""The reward models compared, in the table's order (paper Table 8)."""


def _finished(ctx: RoundContext, r: int, stage: str) -> dict[str, Any]:
    stage_dir = getattr(ctx.run_dir.round(r), stage)
    outputs = ctx.stages.finished(stage_dir)
    if outputs is None:
        raise FileNotFoundError(
            f"launch.ablate round {r}: {stage_dir / 'manifest.json'} is missing; finish round {r} first "
            f"(python -m launch.evolve with the same config and config.last_round >= {r})"
        )
    return outputs


def _method(kind: Kind) -> str:
    return f"mcts_{kind.value}"


def reward_ablation(ctx: RoundContext, r: int) -> dict[str, Any]:
    """Trains the ORM and the PQM of round `r`, runs the three guided searches, writes Table 8 (module docstring);
    returns the ablation stage's outputs (counts per method in `metrics`, and `effects`)."""
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    data, sft = _finished(ctx, r, "data"), _finished(ctx, r, "sft")
    trained = {Kind.PPM: _finished(ctx, r, "ppm")}
    for kind in (Kind.ORM, Kind.PQM):
        trained[kind] = rounds.train_ppm(ctx, r, data, sft, kind)
    problems = ctx.test[: cfg.evolve.eval_problems or None]
    if not problems:
        raise ConfigError(
            f"launch.ablate round {r}: no held-out problems in {ctx.run_dir.problems / 'test.jsonl'} (the toy's test "
            "split, or config.data.eval_benchmarks with a config.data.train_file)"
        )
    out_dir = rd.root / "ablation"
    inputs = {
        "policy": digest(sft),
        "models": {kind.value: digest(trained[kind]) for kind in MODELS},
        "problems": [p.id for p in problems],
        "rollouts": cfg.evolve.eval_samples,
        "search": to_dict(cfg.search),
    }

    def body() -> dict[str, Any]:
        policy_dir = rd.sft / "policy"
        counts = {}
        for kind in MODELS:
            model_dir = rd.root / kind.value / "model"
            counts[_method(kind)] = evaluation.guided_mcts(
                problems, _method(kind), policy=lambda: ctx.models.policy(policy_dir, cfg.search.temperature),
                reward=lambda d=model_dir: ctx.models.ppm(d), cfg=cfg, executor=ctx.executor, grader=ctx.grader,
                out_dir=out_dir,
            )  # fmt: skip
            logging.info("ablation round %d: MCTS + %s: %s", r, kind.value.upper(), counts[_method(kind)]["all"])
        outcomes = {
            kind: {
                row["id"]: bool(row["correct"]) for row in json.loads((out_dir / f"{_method(kind)}.json").read_text())
            }
            for kind in MODELS
        }
        found = [_effect(outcomes, Kind.PPM, other) for other in (Kind.PQM, Kind.ORM)]
        table = plain_inputs(
            {
                "round": r,
                "rollouts": cfg.evolve.eval_samples,
                "counts": counts,
                "effects": [dataclasses.asdict(e) for e in found],
            }
        )  # fmt: skip (as JSON reads back)
        write_json(out_dir / "table8.json", table)
        atomic_write_text(out_dir / "table8.md", table8_markdown(table, found))
        files = [out_dir / f"{_method(kind)}.json" for kind in MODELS] + [
            out_dir / "table8.json",
            out_dir / "table8.md",
        ]
        return {"files": files, "counts": {"problems": len(problems)}, "metrics": table}

    outputs = ctx.stages.run(out_dir, f"round_{r}/ablation", inputs, body)
    logging.info("ablation round %d: Table 8 in %s", r, out_dir / "table8.md")
    return outputs


def _effect(outcomes: Mapping[Kind, Mapping[str, bool]], left: Kind, right: Kind) -> Effect:
    label = {kind: f"MCTS + {kind.value.upper()}" for kind in MODELS}
    return compare(
        f"{left.value.upper()} beats {right.value.upper()}",
        Arm(label[left], outcomes[left]),
        Arm(label[right], outcomes[right]),
        strict=True,
    )


def _cell(count: Mapping[str, int] | None) -> str:
    if not count or not count["total"]:
        return "—"
    return f"{100 * count['correct'] / count['total']:.1f}% ({count['correct']}/{count['total']})"


def table8_markdown(table: Mapping[str, Any], found: list[Effect]) -> str:
    """Table 8's markdown: accuracy per band of each reward model, then the paired comparisons."""
    counts = table["counts"]
    bands = sorted({b for c in counts.values() for b in c if b != "all"}) + ["all"]
    lines = [
        f"# Table 8 (round {table['round']}): reward models guiding test-time MCTS",
        "",
        f"The round's policy, {table['rollouts']} MCTS rollouts per problem, the same seeds for every reward model.",
        "",
        "| reward model | " + " | ".join(bands) + " |",
        "|---" * (len(bands) + 1) + "|",
    ]
    for kind in MODELS:
        row = counts[_method(kind)]
        lines.append(f"| {kind.value.upper()} | " + " | ".join(_cell(row.get(b)) for b in bands) + " |")
    header, rows = markdown_rows(found)
    lines += ["", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
