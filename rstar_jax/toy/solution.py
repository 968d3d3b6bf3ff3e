"""A toy problem's intended computation written as rStar code-augmented steps (one tree node per step).

The layout is the reference's canonical solution (rstar_reference.md Part B §2.3):

    <code>\n# Step 1: <comment>\n<var> = <expr>\n<end_of_step>      first step
    \n\n# Step k: <comment>\n<var> = <expr>\n<end_of_step>         middle steps
    \n\n# Now print the final answer\nprint(<var>)\n<end_of_code>     last code step
    \n<output>…<end_of_output>                                      appended by the system after execution
    \n<answer>… \\boxed{…}.<end_of_answer>                           answer step, written from the output

These are the error-free solutions of the scripted bootstrap teacher; `verify` runs them end to end.
"""

from rstar_jax.data import Problem

__all__ = ["answer_step", "code_steps", "output_block"]


def code_steps(problem: Problem) -> list[str]:
    """The code steps of `problem`'s intended computation (needs `extra["steps"]`, as the toy generator writes)."""
    steps = problem.extra.get("steps")
    if not steps:
        raise ValueError(f"problem {problem.id!r} has no extra['steps'] (not a toy problem?)")
    texts = []
    for k, step in enumerate(steps, start=1):
        head = "<code>\n" if k == 1 else "\n\n"
        texts.append(f"{head}# Step {k}: {step['comment']}\n{step['var']} = {step['expr']}\n<end_of_step>")
    texts.append(f"\n\n# Now print the final answer\nprint({steps[-1]['var']})\n<end_of_code>")
    return texts


def output_block(output: str) -> str:
    """The observation the system appends to the last code step."""
    return f"\n<output>{output.strip()}<end_of_output>"


def answer_step(output: str) -> str:
    """The answer step, stating the program's printed result as the boxed answer."""
    value = output.strip()
    return f"\n<answer>From the result, the answer is \\boxed{{{value}}}.<end_of_answer>"
