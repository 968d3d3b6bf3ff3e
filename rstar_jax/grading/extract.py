"""Final-answer extraction: the content of the last `\\boxed{...}` (or `\\fbox{...}`) in a text.

Only brace matching is done here (no regexes over the content, no truncation at `.\\n`): the reference's
`split('.\\n')[0]` cut answers short and is a bug we do not copy (docs/rstar_reference.md §2.5).
"""

from __future__ import annotations

import re

# `\boxed{`, `\boxed {`, `\fbox{`; the command must not continue as a longer name (`\boxedx`).
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*\{")


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` closing the group whose content starts at `start`, or None when unbalanced.

    Escaped braces (`\\{`, `\\}`) inside the group are content, not structure.
    """
    depth = 1
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character (`\{`, `\}`, `\\`)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_answer(text: str) -> str | None:
    """Return the stripped content of the LAST `\\boxed{...}` / `\\fbox{...}` in `text`.

    Nested braces are matched (`\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`), a space before the brace is
    allowed (`\\boxed {5}`). Returns None when there is no box, or when the last box is never closed.

    Args:
      text: model output (any length).
    """
    if not isinstance(text, str):
        raise TypeError(f"rstar_jax/grading/extract.py: extract_answer expects str, got {type(text).__name__}")
    last = None
    for match in _BOX_OPEN.finditer(text):
        last = match
    if last is None:
        return None
    end = _closing_brace(text, last.end())
    if end is None:
        return None
    return text[last.end() : end].strip()
