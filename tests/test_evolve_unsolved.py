"""Round 4's second search (paper §3.4.2): only the training problems its first search left unsolved are searched
again, with `evolve.unsolved_rollouts` rollouts and new per-problem seeds.

Runs the round-4 trees stage of `rstar_jax.evolve.rounds` directly, with the toy teacher (a seeded chance of a wrong
operand per step, so some trees hold a correct answer and some do not) as the round-3 policy and a hash PPM.
"""

import dataclasses
import json

from rstar_jax.config import EvolveConfig, RunConfig, SearchConfig
from rstar_jax.evolve import rounds
from rstar_jax.evolve.stages import Stages
from rstar_jax.execution import Executor
from rstar_jax.search import read_records
from rstar_jax.search.steps import build_prompt
from rstar_jax.testing import BoxGrader, HashPPM, ScriptedToyPolicy
from rstar_jax.toy import BANDS, generate_problems
from rstar_jax.workdir import RunDir

R = rounds.UNSOLVED_ROUND


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


def test_round4_searches_exactly_the_unsolved_problems_again_with_new_seeds(tmp_path, monkeypatch):
    train = [p for band in BANDS for p in generate_problems(band, 4, 0)]
    cfg = RunConfig(
        seed=0,
        workdir=str(tmp_path / "wd"),
        progress_bars=False,
        search=SearchConfig(rollouts=1, samples_per_expansion=2, max_depth=12, batch_problems=16),
        evolve=EvolveConfig(unsolved_rollouts=3),
    )
    assert cfg.evolve.ppm_from_round <= R
    run_dir = RunDir.create(cfg.workdir, range(R - 1, R + 1))
    stages = Stages()
    _finish(stages, run_dir.round(R - 1).sft, f"round_{R - 1}/sft")
    _finish(stages, run_dir.round(R - 1).ppm, f"round_{R - 1}/ppm")
    policy = ScriptedToyPolicy(train, mistake_rate=0.3)
    ppm = CachedPPM(HashPPM(), policy.calls)
    models = StubModels(policy, ppm)
    searches = []

    def recording_search(problems, out_path, **kwargs):
        searches.append({"ids": [p.id for p in problems], "run_seed": kwargs["run_seed"], "calls": len(policy.calls)})
        return real_search(problems, out_path, **kwargs)

    real_search = rounds.run_search
    monkeypatch.setattr(rounds, "run_search", recording_search)
    with Executor(timeout_s=5.0, workers=1) as executor:
        ctx = rounds.RoundContext(
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
        )
        out = rounds.search_trees(ctx, R)
    assert ("policy", f"round_{R - 1}", cfg.search.temperature) in models.loaded
    assert ("ppm", f"round_{R - 1}") in models.loaded

    trees_dir = run_dir.round(R).trees
    first = list(read_records(trees_dir / "trees.jsonl"))
    again = list(read_records(trees_dir / "trees_unsolved.jsonl"))
    assert [x["id"] for x in first] == [p.id for p in train]
    solved_first = {x["id"] for x in first if rounds._solved(x)}
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
    second = [prompt for call in policy.calls[searches[1]["calls"] :] for prompt in call]
    asked = {p.id for p in train if any(prompt.startswith(build_prompt(p.question, [])) for prompt in second)}
    assert asked == set(unsolved)

    solved = solved_first | {x["id"] for x in again if rounds._solved(x)}
    assert out["counts"] == {"trees": len(train) + len(unsolved), "solved": len(solved)}
    manifest = json.loads((trees_dir / "manifest.json").read_text())
    assert set(manifest["outputs"]["files"]) == {"trees.jsonl", "trees_unsolved.jsonl"}
    assert manifest["inputs"]["unsolved_rollouts"] == cfg.evolve.unsolved_rollouts
