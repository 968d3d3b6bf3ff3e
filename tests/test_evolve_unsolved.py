"""Round 4's second search (paper §3.4.2): only the training problems its first search left unsolved are searched
again, with `evolve.unsolved_rollouts` rollouts and new per-problem seeds.

Runs the round-4 trees stage of `rstar_jax.evolve.rounds` directly, with the toy teacher (a seeded chance of a wrong
operand per step, so some trees hold a correct answer and some do not) as the round-3 policy and a hash PPM.
"""

import dataclasses
import json

from rstar_jax.config import EvolveConfig, RunConfig, SearchConfig
from rstar_jax.devices import run_mesh
from rstar_jax.evolve import context, round_trees
from rstar_jax.evolve.stages import Stages
from rstar_jax.execution import Executor
from rstar_jax.search import read_records
from rstar_jax.search.steps import build_prompt
from rstar_jax.testing import BoxGrader, HashPPM, ScriptedToyPolicy
from rstar_jax.toy import BANDS, generate_problems
from rstar_jax.workdir import RunDir

R = round_trees.UNSOLVED_ROUND


@dataclasses.dataclass
class StubModels:
    """`ModelCache`'s search-side interface: the same teacher and hash PPM whatever the directory."""

    policy_: ScriptedToyPolicy
    ppm_: HashPPM
    loaded: list = dataclasses.field(default_factory=list)

    def policy(self, model_dir, temperature):
        self.loaded.append(("policy", model_dir.parent.parent.name, temperature))
        return self.policy_

    def ppm(self, model_dir):
        self.loaded.append(("ppm", model_dir.parent.parent.name))
        return self.ppm_


@dataclasses.dataclass
class CachedPPM:
    """A hash PPM with `clear_cache`, as `FlaxPPMScorer` (whose values depend on its prefix cache's state)."""

    inner: HashPPM
    policy_calls: list
    cleared: list = dataclasses.field(default_factory=list)

    def score(self, texts):
        return self.inner.score(texts)

    def clear_cache(self):
        self.cleared.append(len(self.policy_calls))


def _finish(stages, stage_dir, name):
    """A finished stage with one placeholder file (what round 4's trees stage reads of round 3)."""

    def body():
        (stage_dir / "model.txt").write_text(name)
        return {"files": [stage_dir / "model.txt"], "counts": {"examples": 1}, "metrics": {}}

    stages.run(stage_dir, name, {}, body)


def _round4(tmp_path, monkeypatch, evolve: EvolveConfig, mistake_rate: float = 0.3):
    """Runs round 4's trees stage; returns (cfg, train, run_dir, stage outputs, searches, policy, ppm, models)."""
    train = [p for band in BANDS for p in generate_problems(band, 4, 0)]
    cfg = RunConfig(
        seed=0,
        workdir=str(tmp_path / "wd"),
        progress_bars=False,
        search=SearchConfig(rollouts=1, samples_per_expansion=2, max_depth=12, batch_problems=16),
        evolve=evolve,
    )
    assert cfg.evolve.ppm_from_round <= R
    run_dir = RunDir.create(cfg.workdir, range(R - 1, R + 1))
    stages = Stages()
    _finish(stages, run_dir.round(R - 1).sft, f"round_{R - 1}/sft")
    _finish(stages, run_dir.round(R - 1).ppm, f"round_{R - 1}/ppm")
    policy = ScriptedToyPolicy(train, mistake_rate=mistake_rate)
    ppm = CachedPPM(HashPPM(), policy.calls)
    models = StubModels(policy, ppm)
    searches = []

    def recording_search(problems, out_path, **kwargs):
        searches.append({"ids": [p.id for p in problems], "run_seed": kwargs["run_seed"], "calls": len(policy.calls)})
        return real_search(problems, out_path, **kwargs)

    real_search = round_trees.run_search
    monkeypatch.setattr(round_trees, "run_search", recording_search)
    with Executor(timeout_s=5.0, workers=1) as executor:
        ctx = context.RoundContext(
            cfg=cfg,
            run_dir=run_dir,
            train=train,
            test=[],
            problems_digest="toy",
            base_dir=tmp_path / "base",
            base_digest="base",
            executor=executor,
            grader=BoxGrader(),
            stages=stages,
            models=models,
            mesh=run_mesh(cfg.mesh),
        )
        out = round_trees.search_trees(ctx, R)
    return cfg, train, run_dir, out, searches, policy, ppm, models


def _asked(policy, train, since_call):
    """Ids of the problems whose questions the policy was asked from its call `since_call` on."""
    prompts = [prompt for call in policy.calls[since_call:] for prompt in call]
    return {p.id for p in train if any(prompt.startswith(build_prompt(p.question, [])) for prompt in prompts)}


def test_round4_searches_exactly_the_unsolved_problems_again_with_new_seeds(tmp_path, monkeypatch):
    cfg, train, run_dir, out, searches, policy, ppm, models = _round4(
        tmp_path, monkeypatch, EvolveConfig(unsolved_rollouts=3)
    )
    assert ("policy", f"round_{R - 1}", cfg.search.temperature) in models.loaded
    assert ("ppm", f"round_{R - 1}") in models.loaded

    trees_dir = run_dir.round(R).trees
    first = list(read_records(trees_dir / "trees.jsonl"))
    again = list(read_records(trees_dir / "trees_unsolved.jsonl"))
    assert [x["id"] for x in first] == [p.id for p in train]
    solved_first = {x["id"] for x in first if round_trees.solved(x)}
    unsolved = [p.id for p in train if p.id not in solved_first]
    assert 0 < len(unsolved) < len(train), "the teacher's mistake rate should leave some problems unsolved"
    assert [x["id"] for x in again] == unsolved, "the second search covers exactly the unsolved problems"

    first_seed = {x["id"]: x["seed"] for x in first}
    assert all(x["seed"] != first_seed[x["id"]] for x in again), "the second search reuses a first-search seed"
    assert len({x["seed"] for x in again}) == len(again)
    assert {x["rollouts"] for x in first} == {cfg.search.rollouts}
    assert {x["rollouts"] for x in again} == {cfg.evolve.unsolved_rollouts}
    assert {x["mode"] for x in first + again} == {"ppm_augmented"}

    # the second search was handed exactly the unsolved problems, and the policy saw only their questions
    assert [c["ids"] for c in searches] == [[p.id for p in train], unsolved]
    assert searches[0]["run_seed"] != searches[1]["run_seed"]
    # each search starts with an empty PPM prefix cache: its trees do not depend on what the process ran before
    assert [c["calls"] for c in searches] == ppm.cleared
    assert _asked(policy, train, searches[1]["calls"]) == set(unsolved)

    solved = solved_first | {x["id"] for x in again if round_trees.solved(x)}
    assert out["counts"] == {"trees": len(train) + len(unsolved), "solved": len(solved)}
    manifest = json.loads((trees_dir / "manifest.json").read_text())
    assert set(manifest["outputs"]["files"]) == {"trees.jsonl", "trees_unsolved.jsonl"}
    assert manifest["inputs"]["unsolved_rollouts"] == cfg.evolve.unsolved_rollouts
    assert "unsolved_more_rollouts" not in manifest["inputs"]  # off: the inputs of older workdirs are unchanged


def test_round4_later_searches_take_only_the_problems_still_unsolved(tmp_path, monkeypatch):
    """`evolve.unsolved_more_rollouts` (paper: 64 more rollouts, then up to 128): each later search gets exactly
    the problems no earlier search solved, with new seeds; one solved in the second search is not searched again."""
    evolve = EvolveConfig(unsolved_rollouts=1, unsolved_more_rollouts=(2,))
    _, train, run_dir, out, searches, policy, ppm, _ = _round4(tmp_path, monkeypatch, evolve, mistake_rate=0.2)
    trees_dir = run_dir.round(R).trees
    tiers = [
        list(read_records(trees_dir / n)) for n in ("trees.jsonl", "trees_unsolved.jsonl", "trees_unsolved_2.jsonl")
    ]
    solved = [{x["id"] for x in records if round_trees.solved(x)} for records in tiers]
    after_first = [p.id for p in train if p.id not in solved[0]]
    after_second = [i for i in after_first if i not in solved[1]]
    assert solved[1] and after_second, "the mistake rate should let the second search solve some, not all"
    assert [[x["id"] for x in records] for records in tiers] == [[p.id for p in train], after_first, after_second]
    assert [c["ids"] for c in searches] == [[p.id for p in train], after_first, after_second]
    assert not solved[1] & set(after_second)  # solved in the second search: not searched a third time
    assert _asked(policy, train, searches[2]["calls"]) == set(after_second)
    assert len({c["run_seed"] for c in searches}) == 3
    seeds = [{x["id"]: x["seed"] for x in records} for records in tiers]
    assert all(seeds[2][i] not in (seeds[0][i], seeds[1][i]) for i in after_second)
    assert [{x["rollouts"] for x in records} for records in tiers] == [{1}, {1}, {2}]
    assert [c["calls"] for c in searches] == ppm.cleared
    assert out["counts"] == {"trees": sum(map(len, tiers)), "solved": len(set().union(*solved))}
    manifest = json.loads((trees_dir / "manifest.json").read_text())
    assert set(manifest["outputs"]["files"]) == {"trees.jsonl", "trees_unsolved.jsonl", "trees_unsolved_2.jsonl"}
    assert manifest["inputs"]["unsolved_more_rollouts"] == [2]
