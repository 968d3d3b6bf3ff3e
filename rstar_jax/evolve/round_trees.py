"""Stage `round_<r>/trees`: one MCTS tree per training problem, and which problems a round's trees solve.

Who searches (paper §3.4.2, Part A "rounds"): round 1 the bootstrap policy, terminal-guided, with
`evolve.bootstrap_rollouts`, prompted with the reference's few-shot prompt when it is a model
(`evolve.bootstrap_shots`, `search.prompts.FewShotPrompt`; the toy teacher reads the SFT template); round r >= 2
the round r-1 policy with the SFT template and `search.rollouts`, and from round `evolve.ppm_from_round` on the
round r-1 PPM initialises new children's Q. The last paper round (4) then
searches the still-unsolved problems again with `evolve.unsolved_rollouts` rollouts and new seeds, then, for each
entry of `evolve.unsolved_more_rollouts`, the problems still unsolved once more with that many rollouts and new
seeds (paper: 64 more rollouts, then up to 128). A problem solved by one search is not searched again.

With several processes each searches its share of the problems (`processes.share`: positions p, p + n, ... of the
training split) into its own shard (`trees.shard-00001-of-00002.jsonl`, resumable per problem like any tree file)
on its own devices (`RoundContext.search_mesh`); once every shard is complete process 0 merges them, in the
training split's order, into the `trees.jsonl` a one-process run writes (one process: one shard). Each problem's
seed derives from the round's seed and its id alone, so the trees do not depend on the process count.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax import processes
from rstar_jax.config import RunConfig, to_dict
from rstar_jax.data import Problem
from rstar_jax.devices import on_mesh
from rstar_jax.evolve import evaluate as evaluation
from rstar_jax.evolve.context import RoundContext, previous
from rstar_jax.evolve.model_cache import bootstrap_identity, bootstrap_policy, bootstrap_prompt
from rstar_jax.evolve.stages import digest
from rstar_jax.search import SearchMode, read_records, run_search
from rstar_jax.search.prompts import FewShotPrompt, sft_prompt
from rstar_jax.search.steps import derive_seed
from rstar_jax.workdir import atomic_write_text

__all__ = ["UNSOLVED_ROUND", "covered", "search_trees", "solved"]

UNSOLVED_ROUND = 4


def solved(record: dict[str, Any]) -> bool:
    """Whether a data-generation tree holds a correct answer leaf (value +1 against the ground truth)."""
    return any(n.get("terminal_kind") == "answer" and n.get("value", 0.0) > 0 for n in record["rstar"].values())


def _unsolved_tiers(cfg: RunConfig, r: int) -> tuple[int, ...]:
    """Rollouts of round r's searches of the problems its earlier searches left unsolved, in order (round 4 only)."""
    if r != UNSOLVED_ROUND or not cfg.evolve.unsolved_rollouts:
        return ()
    return (cfg.evolve.unsolved_rollouts, *cfg.evolve.unsolved_more_rollouts)


def _cold(*models: Any) -> None:
    """Empties the prefix caches of `ModelCache`'s models (kept across stages) before a search, so its trees do not
    depend on what ran earlier in the process: cached prefixes change the padded shapes and with them the rounding
    of the PPM's values, and a resumed stage must write the same trees as an uninterrupted run."""
    for model in models:
        if hasattr(model, "clear_cache"):
            model.clear_cache()


def _search_shared(ctx: RoundContext, problems: list[Problem], path: Path, **search: Any) -> list[dict[str, Any]]:
    """Searches this process's share of `problems` into its shard of `path`, then (process 0) merges every shard
    into `path` in the order of `problems`; returns the merged records (module docstring)."""
    run_search(processes.share(problems), processes.shard_path(path), **search)
    processes.barrier(f"{path}:searched")
    if processes.is_leader():
        by_id = {x["id"]: x for f in processes.shard_paths(path) if f.exists() for x in read_records(f)}
        missing = [p.id for p in problems if p.id not in by_id]
        if missing:
            raise RuntimeError(f"{path}: the shards lack {len(missing)} problems after the search: {missing[:5]}")
        atomic_write_text(path, "".join(json.dumps(by_id[p.id], ensure_ascii=False) + "\n" for p in problems))
    processes.barrier(f"{path}:merged")
    return read_records(path)


def _coverage(ctx: RoundContext, solved_ids: set[str]) -> dict[str, dict[str, int]]:
    return evaluation.band_counts(ctx.train, [p.id in solved_ids for p in ctx.train])


def search_trees(ctx: RoundContext, r: int) -> dict[str, Any]:
    """Stage `round_<r>/trees`: one MCTS tree per training problem (module docstring: who searches)."""
    cfg, rd = ctx.cfg, ctx.run_dir.round(r)
    rollouts = cfg.evolve.bootstrap_rollouts if r == 1 else cfg.search.rollouts
    use_ppm = r >= cfg.evolve.ppm_from_round
    inputs: dict[str, Any] = {
        "problems": ctx.problems_digest,
        "search": to_dict(cfg.search) | {"rollouts": rollouts},
        "mode": (SearchMode.PPM_AUGMENTED if use_ppm else SearchMode.TERMINAL).value,
        "seed": cfg.seed,
        "unsolved_rollouts": cfg.evolve.unsolved_rollouts if r == UNSOLVED_ROUND else 0,
    }
    tiers = _unsolved_tiers(cfg, r)
    if len(tiers) > 1:  # only when set: round-4 workdirs made before the later searches existed still resume
        inputs["unsolved_more_rollouts"] = list(tiers[1:])
    prompt = bootstrap_prompt(cfg) if r == 1 else sft_prompt
    if isinstance(prompt, FewShotPrompt):  # only then: toy workdirs made before the few-shot prompt still resume
        inputs["prompt"] = prompt.identity()
    if r == 1:
        inputs["policy"] = bootstrap_identity(cfg)
    else:
        inputs["policy"] = digest(previous(ctx, r, "sft")[1])
    if use_ppm:
        inputs["ppm"] = digest(previous(ctx, r, "ppm")[1])

    def body() -> dict[str, Any]:
        with on_mesh(ctx.search_mesh):  # models, KV pools and rows on this process's devices
            return searched()

    def searched() -> dict[str, Any]:
        if r == 1:
            policy = bootstrap_policy(cfg, ctx.train, ctx.models)
        else:
            policy = ctx.models.policy(previous(ctx, r, "sft")[0] / "policy", cfg.search.temperature)
        ppm = ctx.models.ppm(previous(ctx, r, "ppm")[0] / "model") if use_ppm else None
        mode = SearchMode.PPM_AUGMENTED if use_ppm else SearchMode.TERMINAL
        common = dict(mode=mode, policy=policy, executor=ctx.executor, grader=ctx.grader, ppm=ppm, prompt=prompt)
        path = rd.trees / "trees.jsonl"
        search_cfg = dataclasses.replace(cfg.search, rollouts=rollouts)
        seed = derive_seed("round", cfg.seed, r)
        _cold(policy, ppm)
        progress = cfg.progress_bars
        records = _search_shared(ctx, ctx.train, path, cfg=search_cfg, run_seed=seed, progress=progress, **common)
        files = [path]
        for k, tier_rollouts in enumerate(tiers):
            unsolved = [p for p in ctx.train if p.id not in {x["id"] for x in records if solved(x)}]
            if not unsolved:
                break
            if k == 0:
                logging.info("round %d: %d unsolved problems searched again", r, len(unsolved))
                extra, extra_seed = rd.trees / "trees_unsolved.jsonl", derive_seed("round-unsolved", cfg.seed, r)
            else:
                logging.info(
                    "round %d: %d problems still unsolved, searched once more (search %d)", r, len(unsolved), k + 2
                )
                extra = rd.trees / f"trees_unsolved_{k + 1}.jsonl"
                extra_seed = derive_seed("round-unsolved", cfg.seed, r, k + 1)
            extra_cfg = dataclasses.replace(cfg.search, rollouts=tier_rollouts)
            _cold(policy, ppm)
            records += _search_shared(
                ctx, unsolved, extra, cfg=extra_cfg, run_seed=extra_seed, progress=cfg.progress_bars, **common
            )
            files.append(extra)
        solved_ids = {x["id"] for x in records if solved(x)}
        return {
            "files": files,
            "counts": {"trees": len(records), "solved": len(solved_ids)},
            "metrics": {"coverage": _coverage(ctx, solved_ids)},
        }

    return ctx.stages.run(rd.trees, f"round_{r}/trees", inputs, body, every_process=True)


def covered(ctx: RoundContext, r: int, trees: dict[str, Any]) -> dict[str, bool]:
    """`{train_problem_id: solved}` from the round's tree files (the per-problem form of the coverage counts)."""
    solved_ids: set[str] = set()
    for name in trees["files"]:
        solved_ids |= {x["id"] for x in read_records(ctx.run_dir.round(r).trees / name) if solved(x)}
    return {p.id: p.id in solved_ids for p in ctx.train}
