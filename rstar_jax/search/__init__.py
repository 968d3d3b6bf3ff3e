"""Tree search with rStar semantics and the test-time baselines.

    from rstar_jax.search import SearchMode, run_search
    run_search(problems, "trees.jsonl", cfg=cfg.search, mode=SearchMode.TEST, policy=policy,
               executor=executor, grader=ProjectGrader(), ppm=ppm, run_seed=cfg.seed)

Modules: `tree` (the `[B, N]` fields), `kernels` (pure select and search step, vmapped over trees),
`steps` (the SFT prompt, answer rule, sample filter, seeds), `prompts` (the policy's prompt builders: the SFT
template, the reference's few-shot bootstrap prompt), `nodes` (host payloads, child creation), `driver`
(lock-step batched MCTS), `records` (reference-schema JSONL, resumable file), `run` (problem set -> file),
`grader` (answer checking protocol), `baselines` (greedy, votes, best-of-N, beam search, paper protocol).
"""

from rstar_jax.search.baselines import (
    Prediction,
    best_of_n,
    greedy,
    mcts,
    paper_protocol,
    self_consistency,
    step_beam_search,
    weighted_vote,
)
from rstar_jax.search.driver import BatchSearch, SearchMode, TreeKernels, node_capacity, problem_seed
from rstar_jax.search.grader import Grader, ProjectGrader, is_correct
from rstar_jax.search.prompts import FewShotPrompt, Prompter, sft_prompt
from rstar_jax.search.records import TreeFile, batch_records, best_answer, read_records
from rstar_jax.search.run import SearchSummary, run_search
from rstar_jax.search.steps import build_prompt, derive_seed, filter_samples, is_answer_step
from rstar_jax.search.trajectories import Trajectory, beam_search, sample_trajectories
from rstar_jax.search.tree import TerminalKind, Tree, init_tree

__all__ = [
    "BatchSearch",
    "FewShotPrompt",
    "Grader",
    "Prediction",
    "ProjectGrader",
    "Prompter",
    "SearchMode",
    "SearchSummary",
    "TerminalKind",
    "Trajectory",
    "Tree",
    "TreeFile",
    "TreeKernels",
    "beam_search",
    "best_of_n",
    "batch_records",
    "best_answer",
    "build_prompt",
    "derive_seed",
    "filter_samples",
    "greedy",
    "init_tree",
    "is_answer_step",
    "is_correct",
    "node_capacity",
    "mcts",
    "paper_protocol",
    "problem_seed",
    "read_records",
    "run_search",
    "sample_trajectories",
    "self_consistency",
    "sft_prompt",
    "step_beam_search",
    "weighted_vote",
]
