"""Turn rStar step texts into the Python program the executor runs (rstar_reference.md Part B §2.6).

The tree search passes the texts of the path's code history, root to the new step (the history walk of §2.6:
every step since the last one that closed a code block or showed an `<output>`, tagged or not), e.g.

    ["<code>\\n# Step 1\\nx = 2\\n<end_of_step>", "\\n\\n# Step 2\\nprint(x * 3)\\n<end_of_code>"]

and `build_program` returns "# ========\\n# Step 1\\nx = 2\\n\\n\\n# Step 2\\nprint(x * 3)".

Rules (the reference's `extract_program`, with one fix):
- every `<end_of_step>` is removed, then the text is split into lines;
- a line containing `<code>` starts capturing and adds a "# ========" separator line;
- a line containing `<end_of_code>` stops capturing;
- other lines are kept while capturing;
- if nothing was captured (no `<code>` tag), the whole text is the program; the result is stripped.
Fix: text on the same line after `<code>` or before `<end_of_code>` is kept (the reference drops the whole
line, silently deleting a statement such as `print(x)<end_of_code>`).
"""

from __future__ import annotations

from collections.abc import Sequence

CODE_TAG = "<code>"
STEP_END_TAG = "<end_of_step>"
CODE_END_TAG = "<end_of_code>"
_SEPARATOR = "# ========"


def build_program(code_steps: Sequence[str]) -> str:
    """The program for a code step, from the texts of its block's steps (root to the new step).

    Args:
      code_steps: step texts as generated (stop tag included), e.g. `"<code>\\nx = 1\\n<end_of_step>"`.

    Returns:
      The Python source to execute (possibly empty).
    """
    if isinstance(code_steps, str):
        raise TypeError("rstar_jax.execution.build_program: pass a sequence of step texts, not one str")
    text = "".join(code_steps).replace(STEP_END_TAG, "")
    lines: list[str] = []
    capturing = False
    captured_any = False
    for line in text.split("\n"):
        if CODE_TAG in line:
            capturing = captured_any = True
            lines.append(_SEPARATOR)
            rest = line.split(CODE_TAG, 1)[1]
            if CODE_END_TAG in rest:
                lines.append(rest.split(CODE_END_TAG, 1)[0])
                capturing = False
            elif rest.strip():
                lines.append(rest)
        elif CODE_END_TAG in line:
            if capturing:
                head = line.split(CODE_END_TAG, 1)[0]
                if head.strip():
                    lines.append(head)
            capturing = False
        elif capturing:
            lines.append(line)
    if not captured_any:
        return text.strip()
    return "\n".join(lines).strip()
