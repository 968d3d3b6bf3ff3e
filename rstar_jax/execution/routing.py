"""Which zygote flavour runs a program: LEAN (stdlib only, cheap forks) or HEAVY (numpy/scipy/sympy loaded).

Forking costs grow with the zygote's resident memory: a fork of the HEAVY zygote (numpy, scipy and sympy
pre-imported, ~55 MB) costs ~3 CPU ms, a fork of the LEAN one (stdlib and math modules only) ~1 ms. Most
programs import nothing beyond the standard library, so they run in the LEAN zygote.

Both flavours run the same child code under the same sandbox and limits, so a program gets the same
`ExecResult` in either (tests/test_execution_routing.py): a LEAN child that imports numpy, scipy or sympy
still works, only slower, and the LEAN zygote seeds `numpy.random` on its first import exactly as the HEAVY
zygote does at start-up. Routing therefore only decides speed, never results, and is a cheap textual scan done
in the caller's process (no parse: `ast.parse` would print SyntaxWarnings of model code into the caller's
stderr and cost more than the scan). Observable differences are limited to interpreter introspection such
as `sys.modules` and to the share of `memory_mb` a dynamic import of a large package uses up.

Rule (`route`):
- no "import" substring anywhere in the text: LEAN;
- HEAVY when the text mentions `__import__` or `importlib` (dynamic imports), contains a relative import or
  a `from X import` / `import X, Y` whose top-level module X or Y is not in `sys.stdlib_module_names`;
- else LEAN. Text inside strings and comments counts too (it can only send a program to HEAVY).
"""

from __future__ import annotations

import enum
import re
import sys

_STDLIB = frozenset(sys.stdlib_module_names)
_DYNAMIC = re.compile(r"__import__|importlib")
_FROM_IMPORT = re.compile(r"\bfrom[ \t]+(\.*)[ \t]*([\w.]*)[ \t]+import\b")
_IMPORT = re.compile(r"\bimport[ \t]+([\w.]+(?:[ \t]+as[ \t]+\w+)?(?:[ \t]*,[ \t]*[\w.]+(?:[ \t]+as[ \t]+\w+)?)*)")


class Flavour(enum.Enum):
    """The two kinds of zygote an executor slot may hold."""

    LEAN = "lean"  # stdlib + small math modules pre-imported
    HEAVY = "heavy"  # the Executor's `preload` modules (default numpy, scipy, sympy) pre-imported


def _top_level(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def route(code: str) -> Flavour:
    """The flavour of zygote that should run `code` (see the module docstring for the rule).

    Args:
      code: the program's source text.

    Returns:
      Flavour.LEAN when the program needs nothing beyond the standard library, else Flavour.HEAVY.
    """
    if "import" not in code:
        return Flavour.LEAN
    if _DYNAMIC.search(code):
        return Flavour.HEAVY
    for dots, module in _FROM_IMPORT.findall(code):
        if dots or _top_level(module) not in _STDLIB:
            return Flavour.HEAVY
    rest = _FROM_IMPORT.sub(" ", code)  # the names after "from X import" are not modules
    for names in _IMPORT.findall(rest):
        for name in names.split(","):
            if _top_level(name.split()[0]) not in _STDLIB:
                return Flavour.HEAVY
    return Flavour.LEAN
