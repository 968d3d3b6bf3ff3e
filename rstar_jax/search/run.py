"""Search a problem set into a tree file, batch by batch, resuming where a previous run stopped.

    summary = run_search(problems, "workdir/round_1/trees.jsonl", cfg=cfg.search, mode=SearchMode.TERMINAL,
                         policy=policy, executor=executor, grader=ProjectGrader(), ppm=None, run_seed=cfg.seed)

Problems whose records are already in the file are skipped (never recomputed); the others are searched in
lock-step batches of `cfg.batch_problems` and each finished batch is appended at once. A killed run loses at most
the batch in flight. Every problem's tree depends only on (run seed, problem id, models, config), not on which
batch it lands in, so a resumed run writes the same records as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

from rstar_jax.config import SearchConfig
from rstar_jax.data import Problem
from rstar_jax.interfaces import Policy, ValueModel
from rstar_jax.progress import Progress
from rstar_jax.search.driver import BatchSearch, Runner, SearchMode, TreeKernels
from rstar_jax.search.grader import Grader
from rstar_jax.search.prompts import Prompter, sft_prompt
from rstar_jax.search.records import TreeFile, batch_records

__all__ = ["SearchSummary", "run_search"]


@dataclasses.dataclass(frozen=True)
class SearchSummary:
    """What `run_search` did: ids searched now, ids skipped as already done, and total seconds."""

    searched: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float
    expansions: int


def run_search(
    problems: Sequence[Problem],
    out_path: str | os.PathLike,
    *,
    cfg: SearchConfig,
    mode: SearchMode,
    policy: Policy,
    executor: Runner,
    grader: Grader,
    ppm: ValueModel | None,
    run_seed: int,
    progress: bool = True,
    prompt: Prompter = sft_prompt,
) -> SearchSummary:
    """Searches every problem not yet in `out_path` and appends its tree record.

    Args:
      problems: the problem set (ids must be unique).
      out_path: the tree JSONL file (created; a torn last line from a killed run is cut off first).
      cfg: search settings; mode: TERMINAL, PPM_AUGMENTED or TEST.
      policy, executor, grader, ppm: the models and tools (ppm may be None in TERMINAL mode).
      run_seed: the run's seed; each problem derives its own from it and its id.
      progress: show a progress bar over problems.
      prompt: the policy's prompt builder (the SFT template; round 1's few-shot prompt, `prompts.FewShotPrompt`).

    Returns:
      A `SearchSummary`.
    """
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError(f"rstar_jax/search/run.py: duplicate problem ids in the input ({len(ids) - len(set(ids))})")
    start = time.perf_counter()
    tree_file = TreeFile(out_path)
    done = tree_file.done_ids()
    todo = [p for p in problems if p.id not in done]
    kernels = TreeKernels.build(cfg)
    expansions = 0
    with Progress(total=len(todo), desc=f"search ({mode.value})", unit="problem", enabled=progress) as bar:
        for lo in range(0, len(todo), cfg.batch_problems):
            batch = todo[lo : lo + cfg.batch_problems]
            batch_start = time.perf_counter()
            search = BatchSearch(
                batch, cfg, mode, policy, executor, grader, ppm, run_seed, kernels, prompt=prompt
            ).run_rollouts()
            records = batch_records(search)
            wall = time.perf_counter() - batch_start
            timings = [
                {
                    "id": p.id,
                    "batch_size": len(batch),
                    "batch_wall_s": wall,
                    "batch_expansions": search.expansions,
                    **{f"batch_{k}": v for k, v in search.timings.items()},
                }
                for p in batch
            ]
            tree_file.append(records, timings)
            expansions += search.expansions
            bar.update(len(batch))
    return SearchSummary(
        searched=tuple(p.id for p in todo),
        skipped=tuple(p.id for p in problems if p.id in done),
        seconds=time.perf_counter() - start,
        expansions=expansions,
    )
