"""Grading worker process: `python -m rstar_jax.grading._worker` (started by `rstar_jax/grading/pool.py`).

Protocol, one JSON object per line:
  stdout  {"ready": true}                                            once, after imports and a warm-up
  stdin   {"id": int, "pred": str, "refs": [str, ...], "pct": bool}   one check
  stdout  {"id": int, "match": bool}                                 its verdict (any exception -> false)
EOF on stdin ends the process. The real stdout is kept private for the protocol; file descriptor 1 is
pointed at stderr so a stray print inside a library cannot corrupt the stream. The process caps its own
address space (2 GiB above what the imports use), so a huge power tower fails with MemoryError instead of
swapping the host, and a watchdog thread exits if the parent dies. The caller enforces the time limit by
killing this process; nothing here uses signals.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

from rstar_jax.grading.symbolic import install_numeric_guard, symbolic_match

_EXTRA_ADDRESS_SPACE = 2 << 30
# Checked once before "ready": the first parse builds the LaTeX parser and sympy's caches (0.7 s on an idle
# core), which must count against start-up, not against the first real check's time limit.
_WARM_UP = {"pred": "\\frac{\\sqrt{3}}{2}", "refs": ["(x-1)(x+1)", "(2,1)", "50\\%"], "pct": True}


def _limit_address_space() -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = vm_kib * 1024 + _EXTRA_ADDRESS_SPACE
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _check(request: dict) -> bool:
    try:
        return any(symbolic_match(request["pred"], ref, bool(request["pct"])) for ref in request["refs"])
    except Exception:  # noqa: BLE001 - includes MemoryError, RecursionError, sympy's own errors
        return False


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if sys.platform.startswith("linux"):
        _limit_address_space()
    install_numeric_guard()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    _check(_WARM_UP)
    protocol.write('{"ready": true}\n')
    for line in sys.stdin:
        request = json.loads(line)
        protocol.write(json.dumps({"id": request["id"], "match": _check(request)}) + "\n")


if __name__ == "__main__":
    main()
