"""A real-data micro round that evaluates on benchmarks (`data.eval_benchmarks`, `data.eval_subset`): the committed
toy base is the base and round-1 policy (a real HF directory; its answers mean nothing), the training file holds
three problems. One re-types an evaluated benchmark question (case, spacing, punctuation) and must be dropped and
counted; one is a benchmark question that is NOT in the evaluated subset and must be kept. The round's evaluate
stage must grade exactly the seeded subset of each benchmark.

Skips with a message when the benchmark files are absent (like tests/test_data_benchmarks.py).
"""

import json

import pytest

from rstar_jax.config import DataConfig, EvolveConfig, ExecutionConfig, ModelSetup, RunConfig, SearchConfig, TrainConfig
from rstar_jax.config_validation import validate
from rstar_jax.data import held_out, load_benchmark, load_problems
from rstar_jax.evolve.run import evolve
from rstar_jax.toy.base_corpus import BASE_DIR

BENCHMARKS = ("gsm8k", "math500")
SUBSET = 2


def _benchmark(name: str):
    try:
        return list(load_benchmark(name).problems)
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"benchmark {name} not found ({err}); set $RSTAR_BENCHMARK_DIR or ../shared/data/benchmarks")


def _train(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=2, max_length=384, learning_rate=1e-4, compute_dtype="float32",
                       eval_fraction=0.0, save_every=1, log_every=1)  # fmt: skip


def _retyped(question: str) -> str:
    """The same question as another file might store it: upper case, doubled spaces, a stray final period."""
    return "  " + question.upper().replace(" ", "  ") + " ."


def test_real_data_round_evaluates_the_benchmark_subset_without_its_questions_in_training(tmp_path):
    gsm = _benchmark("gsm8k")
    chosen = {name: held_out.benchmark_subset(_benchmark(name), SUBSET, seed=0) for name in BENCHMARKS}
    evaluated = chosen["gsm8k"][0]
    not_evaluated = next(p for p in gsm if p not in chosen["gsm8k"])
    train = [
        {"id": "mine/0", "question": _retyped(evaluated.question), "answer": evaluated.answer},
        {"id": "mine/1", "question": not_evaluated.question, "answer": not_evaluated.answer},
        {"id": "mine/2", "question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"},
    ]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(x) + "\n" for x in train))
    cfg = validate(
        RunConfig(
            seed=0,
            workdir=str(tmp_path / "wd"),
            last_round=1,
            progress_bars=False,
            data=DataConfig(train_file=str(train_file), eval_benchmarks=BENCHMARKS, eval_subset=SUBSET),
            model=ModelSetup(base=str(BASE_DIR), pool_slots=8192, max_rows=16),
            search=SearchConfig(samples_per_expansion=2, max_depth=2, max_step_tokens=16, temperature=0.7),
            evolve=EvolveConfig(
                bootstrap_rollouts=1,
                bootstrap_shots=0,
                unsolved_rollouts=0,
                full_eval_rounds=(),
                eval_samples=1,
                report_trees=0,
            ),  # fmt: skip
            execution=ExecutionConfig(workers=1, timeout_s=5.0),
            sft=_train(1),
            ppm=_train(1),
        )
    )
    summary = evolve(cfg)
    wd = tmp_path / "wd"
    manifest = json.loads((wd / "problems" / "manifest.json").read_text())
    assert manifest["outputs"]["counts"] == {"train": 2, "test": 2 * SUBSET, "dropped_overlap": 1}
    assert manifest["outputs"]["metrics"]["dropped_overlap_ids"] == ["mine/0"]
    assert manifest["inputs"]["held_out"]["eval_subset"] == SUBSET
    assert summary["problems"] == {"train": 2, "test": 2 * SUBSET, "dropped_overlap": 1}

    assert [p.id for p in load_problems(wd / "problems" / "train.jsonl")] == ["mine/1", "mine/2"]
    want = [p.id for name in BENCHMARKS for p in chosen[name]]
    assert [p.id for p in load_problems(wd / "problems" / "test.jsonl")] == want
    rd = wd / "round_1"
    trees = [json.loads(line)["id"] for line in (rd / "trees" / "trees.jsonl").read_text().splitlines()]
    assert sorted(trees) == ["mine/1", "mine/2"]
    graded = json.loads((rd / "eval" / "greedy.json").read_text())
    assert [r["id"] for r in graded] == want and [r["band"] for r in graded] == ["gsm8k"] * 2 + ["math500"] * 2
    evaluated_counts = json.loads((rd / "eval" / "manifest.json").read_text())["outputs"]["metrics"]["greedy"]
    assert {k: v["total"] for k, v in evaluated_counts.items()} == {"gsm8k": 2, "math500": 2, "all": 4}

    again = evolve(cfg)  # a rerun reuses the problems stage: nothing dropped again, nothing logged again
    assert again["problems"] == summary["problems"]
    log = (wd / "logs" / "evolve.log").read_text().splitlines()
    dropped_lines = [line for line in log if "dropped 1 training problem" in line]
    assert len(dropped_lines) == 1 and "mine/0" in dropped_lines[0], dropped_lines


def test_subset_rule_is_seeded_stable_and_in_file_order():
    problems = _benchmark("math500")
    small, large = (held_out.benchmark_subset(problems, n, seed=3) for n in (5, 20))
    assert len(small) == 5 and set(p.id for p in small) <= set(p.id for p in large)  # growing n keeps the choice
    order = [p.id for p in problems]
    assert [p.id for p in large] == sorted((p.id for p in large), key=order.index)
    other = held_out.benchmark_subset(problems, 20, seed=4)
    assert {p.id for p in other} != {p.id for p in large}
    assert held_out.benchmark_subset(problems, 0, seed=3) == problems


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is $1.5 + x$?", "what is 1.5+x"),
        (r"Find \left( a \, b \right) now.", "FIND (ab) NOW"),
        ("It's  \u201ceasy\u201d:  2 \\quad 3", "Its easy 23"),
        ("\uff11\uff12 apples", "12 apples"),
    ],
)
def test_overlap_key_matches_retyped_questions(a, b):
    assert held_out.normalize_for_overlap(a) == held_out.normalize_for_overlap(b)


@pytest.mark.parametrize(
    "a, b", [("What is 1.5 + 2?", "What is 15 + 2?"), ("x - 1", "x + 1"), ("1,000 apples", "1 000 apples")]
)
def test_overlap_key_keeps_different_questions_apart(a, b):
    assert held_out.normalize_for_overlap(a) != held_out.normalize_for_overlap(b)
