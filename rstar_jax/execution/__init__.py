"""Safe, fast execution of model-written Python: the only place in rstar_jax that runs generated code.

    from rstar_jax.execution import Executor, ExecResult, build_program

    with Executor(timeout_s=10.0, workers=2) as ex:
        [result] = ex.run_batch([build_program(step_texts)])
        result.ok, result.output, result.error, result.seconds, result.status

Modules: `executor` (the public pool and its dispatcher threads), `routing` (LEAN or HEAVY zygote per program),
`worker` (parent-side zygote handle),
`zygote` (pre-warmed fork server), `child` (confinement and program semantics inside one forked child),
`sandbox` (namespaces, Landlock, capabilities), `seccomp` (the BPF filter), `result` (ExecResult and output
post-processing), `program` (step texts -> program), `protocol` (message framing).
"""

from rstar_jax.execution.executor import Executor
from rstar_jax.execution.program import build_program
from rstar_jax.execution.result import ExecResult, ExecStatus

__all__ = ["ExecResult", "ExecStatus", "Executor", "build_program"]
