"""The XLA settings a launcher makes before jax loads: the persistent compile cache and a cheaper CPU code generator.

    xla_env.use_compile_cache("~/.cache/rstar_jax/xla")   # every compiled program cached on disk, shared by runs
    xla_env.use_cheap_cpu_codegen()                        # XLA_FLAGS += --xla_cpu_use_fusion_emitters=false

Both run in `cli.parsed_config`, before a launcher imports jax, and neither imports jax: a command refused for a bad
file costs a quarter of a second, not jax's 3 s import.

Why the CPU flag: on the toy's 2-core runs compiling is most of a search (about 120 programs per evaluation, shapes
bucketed by rows, tokens and cache slots). XLA's CPU fusion emitters (its newer code generator) compile those
programs more slowly than the older elemental emitters they replace: round 1's MCTS evaluation of 60 problems took
117 s with XLA's defaults and 99 s with the flag (compiling 63 -> 47 s), with the same answers; round 1's PPM
training (100 steps) 97 s without and 94 s with it (compiling 12.3 -> 9.3 s). The flag changes how CPU programs
are generated, not which operations they run; floating-point rounding can differ in the last bits, so a model
trained with it ends slightly different from one trained without (the same PPM run: final loss 0.574 vs 0.616).
GPU and TPU programs do not read it.

XLA aborts a process whose XLA_FLAGS holds a flag its version does not know, so a probe process first tries the flag
on this jaxlib; the answer is kept per jaxlib version and Python in `~/.cache/rstar_jax/xla_flags.json`. A user's
own setting of the flag in XLA_FLAGS is left as it is (`XLA_FLAGS=--xla_cpu_use_fusion_emitters=true` keeps XLA's
default code generator).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["CHEAP_CPU_CODEGEN", "knows_xla_flag", "use_cheap_cpu_codegen", "use_compile_cache"]

CHEAP_CPU_CODEGEN = "--xla_cpu_use_fusion_emitters=false"
_PROBE_CACHE = Path("~/.cache/rstar_jax/xla_flags.json")


def use_compile_cache(path: str) -> None:
    """Every compiled program is written to (and first looked up in) `path` ('' = JAX's default: no cache).

    Before jax is imported the settings go to the environment, which jax reads when it loads; after, to jax.config."""
    if not path:
        return
    settings = {  # the toy's programs compile in < 1 s: cache them all
        "jax_compilation_cache_dir": os.path.expanduser(path),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
    }
    if "jax" not in sys.modules:
        os.environ.update({name.upper(): str(value) for name, value in settings.items()})
        return
    import jax

    for name, value in settings.items():
        jax.config.update(name, value)


def use_cheap_cpu_codegen() -> bool:
    """Adds `CHEAP_CPU_CODEGEN` to XLA_FLAGS where this jaxlib knows it (module docstring); returns whether it is set.

    Must run before jax's backend starts (the first device use), when XLA reads its flags; does nothing when
    XLA_FLAGS already sets the flag."""
    name = CHEAP_CPU_CODEGEN.split("=")[0]
    current = os.environ.get("XLA_FLAGS", "")
    if name in current:
        return CHEAP_CPU_CODEGEN in current.split()
    if not knows_xla_flag(CHEAP_CPU_CODEGEN):
        return False
    os.environ["XLA_FLAGS"] = f"{current} {CHEAP_CPU_CODEGEN}".strip()
    return True


def knows_xla_flag(flag: str) -> bool:
    """Whether a process with `flag` added to XLA_FLAGS starts jax's CPU backend (a probe process, about 1.5 s, run
    once per jaxlib version, Python and flag; the answer is kept in `~/.cache/rstar_jax/xla_flags.json`)."""
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return False
    key = f"{version} {sys.executable} {flag}"
    cache = _PROBE_CACHE.expanduser()
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), bool):
        return known[key]
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip(), "JAX_PLATFORMS": "cpu"}
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import jax; jax.numpy.ones(2).block_until_ready()"],
            env=env,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False  # not recorded: a slow or failed start says nothing about the flag
    ok = probe.returncode == 0
    if not ok and b"Unknown flag" not in probe.stderr:
        return False  # not recorded either: the probe failed for another reason (memory, a broken install)
    known = (known if isinstance(known, dict) else {}) | {key: ok}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass  # an unwritable home: the probe runs again next time
    return ok
