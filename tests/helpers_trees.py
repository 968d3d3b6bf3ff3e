"""A small hand-built search-tree record in the tree-file schema (`rstar_jax/search/records.py`), for viewer tests."""

from __future__ import annotations


def _node(text, q, kind="none", *, value=0.0, code="", output=None, errors=0, visits=1, prior=0.0, answer=None):
    node = {"text": text, "action_input": code, "q_value": q, "value": value, "visit_count": visits,
            "terminal_kind": kind, "consecutive_errors": errors, "prior": prior, "answer": answer}  # fmt: skip
    return node if output is None else node | {"observation": output}


def tree_record(pid: str = "toy/train/gsm/000007", mode: str = "ppm_augmented") -> dict:
    """Root -> 0.1 (leads to the correct answer 0.1.1), 0.2 (to the wrong answer 0.2.1), 0.3 (a code error)."""
    ok, bad = "<code>\nx = 2 + 2\n<end_of_step>", "<code>\nx = 2 + 4\n<end_of_step>"
    rstar = {
        "0": _node("", 0.0, visits=3),
        "0.1": _node(ok, 0.8, code=ok, output="", prior=0.3),
        "0.2": _node(bad, -0.6, code=bad, output="", prior=-0.2),
        "0.3": _node(
            "<code>\nx = y\n",
            -1.0,
            "code_errors",
            value=-1.0,
            code="<code>\nx = y\n",
            output="NameError: name 'y' is not defined",
            errors=1,
        ),  # fmt: skip
        "0.1.1": _node("\n<answer>\\boxed{4}<end_of_answer>", 1.0, "answer", value=1.0, answer="4"),
        "0.2.1": _node("\n<answer>\\boxed{6}<end_of_answer>", -1.0, "answer", value=-1.0, answer="6"),
    }
    return {"id": pid, "question": "What is 2 + 2?", "answer": "4", "seed": 1, "mode": mode, "rollouts": 3,
            "num_nodes": len(rstar), "best_answer": "4", "best_value": 1.0, "rstar": rstar}  # fmt: skip
