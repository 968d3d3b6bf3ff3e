"""Zygote flavours: the LEAN/HEAVY routing rule, and identical results whichever flavour runs a program."""

from __future__ import annotations

import dataclasses

import pytest

from rstar_jax.execution import ExecResult, Executor
from rstar_jax.execution.routing import Flavour, route

LEAN, HEAVY = Flavour.LEAN, Flavour.HEAVY


@pytest.mark.parametrize(
    ("code", "flavour"),
    [
        ("print(1 + 1)", LEAN),
        ("x = 2\nx * 3", LEAN),
        ("import math\nprint(math.sqrt(2))", LEAN),
        ("from fractions import Fraction\nFraction(1, 3)", LEAN),
        ("from collections.abc import Sequence", LEAN),
        ("import math as m, itertools as it\nprint(m.pi)", LEAN),
        ("from math import (\n    sqrt,\n    pi,\n)\nprint(sqrt(pi))", LEAN),
        ("# no imports here, not even in text about important things\nprint('important')", LEAN),
        ("import numpy as np\nprint(np.zeros(2))", HEAVY),
        ("import numpy.linalg", HEAVY),
        ("from sympy import symbols, solve", HEAVY),
        ("from scipy.special import comb", HEAVY),
        ("import os, sympy", HEAVY),
        ("import math\nif True: import sympy", HEAVY),
        ("def f():\n    from sympy import Rational\n    return Rational(1, 2)", HEAVY),
        ("import some_unknown_package", HEAVY),
        ("from . import sibling", HEAVY),
        ("import importlib\nimportlib.import_module('math')", HEAVY),
        ("m = __import__('math')", HEAVY),
        ("import builtins\nbuiltins.__import__('math')", HEAVY),
    ],
)
def test_route(code: str, flavour: Flavour) -> None:
    assert route(code) is flavour, code


# Programs compared across flavours: stdlib-only ones, syntax errors, exceptions, and ones that load numpy,
# sympy or scipy although the router sends them to LEAN (an import the text scan cannot see).
_DYNAMIC = "mod = eval('__imp' + 'ort__')('{name}')\n"
COMPARED = [
    "print(1 + 1)",
    "x = 7\nx ** 20",
    "import math\nprint(math.factorial(30), math.pi)",
    "from fractions import Fraction\nFraction(3, 4) + Fraction(1, 6)",
    "import random\nprint(random.random(), random.randint(1, 100))",
    "print(1 / 0)",
    "def f(:\n    pass",
    "x = [1, 2\nprint(x)",
    "import sys\nsys.exit(3)",
    "raise KeyError('k')",
    "import this_module_does_not_exist",
    "print('a' * 5000)",
    _DYNAMIC.format(name="numpy") + "print(mod.random.rand(3), mod.random.randint(0, 1000))",
    _DYNAMIC.format(name="numpy") + "print(mod.linalg.det(mod.array([[1.0, 2.0], [3.0, 4.0]])))",
    _DYNAMIC.format(name="sympy") + "x = mod.Symbol('x')\nprint(mod.solve(x**2 - 4, x))",
    _DYNAMIC.format(name="scipy.special") + "print(mod.__name__)",
    "import numpy as np\nprint(np.random.rand(2))",
    "from sympy import Rational\nRational(1, 3) + Rational(1, 6)",
]


def _comparable(result: ExecResult) -> ExecResult:
    return dataclasses.replace(result, seconds=0.0)


@pytest.fixture(scope="module")
def both() -> tuple[list[ExecResult], list[ExecResult]]:
    with Executor(timeout_s=20.0, workers=1) as mixed:
        routed = mixed.run_batch(COMPARED)
    with Executor(timeout_s=20.0, workers=1, lean_zygotes=False) as heavy:
        heavy_only = heavy.run_batch(COMPARED)
    return routed, heavy_only


def test_compared_programs_cover_both_flavours() -> None:
    flavours = {route(code) for code in COMPARED}
    assert flavours == {LEAN, HEAVY}
    assert sum(route(code) is LEAN for code in COMPARED) >= 14


@pytest.mark.parametrize("index", range(len(COMPARED)))
def test_same_result_in_both_flavours(both, index: int) -> None:
    routed, heavy_only = both
    assert _comparable(routed[index]) == _comparable(heavy_only[index]), COMPARED[index]


def test_dynamic_numpy_import_is_seeded_like_the_preloaded_one(both) -> None:
    routed, _ = both
    index = 12
    assert route(COMPARED[index]) is LEAN and routed[index].ok
    with Executor(timeout_s=20.0, workers=1, preload=()) as bare:
        [again] = bare.run_batch([COMPARED[index]])
    assert again.output == routed[index].output  # seeded on import, not from the OS


def test_lean_zygotes_exist_only_with_a_preload() -> None:
    with Executor(workers=1, preload=()) as bare:
        assert len(bare.worker_pids()) == 1
        [result] = bare.run_batch(["print(2)"])
        assert result.ok and result.output == "2\n"
    with Executor(workers=1) as default:
        assert len(default.worker_pids()) == 2


def test_stdlib_programs_run_in_the_lean_zygote() -> None:
    probe = "import sys\nprint('numpy' in sys.modules, 'sympy' in sys.modules)"  # introspection differs
    heavy_probe = "import sympy, sys\nprint('numpy' in sys.modules, 'sympy' in sys.modules)"
    with Executor(workers=1) as ex:
        lean, heavy = ex.run_batch([probe, heavy_probe])
    assert lean.output == "False False\n"
    assert heavy.output == "True True\n"
