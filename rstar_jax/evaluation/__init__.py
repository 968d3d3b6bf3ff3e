"""Test-time evaluation (`python -m launch.evaluate`): methods metered per problem, resumable predictions files,
tables with intervals and accuracy-vs-budget curves.

- `methods`: one method of `search.baselines` on one chunk of problems, metered (`run_chunk`, `Meter`);
- `store`: append-only, fsynced predictions files that a killed run resumes (`PredictionFile`);
- `summary`: accuracy cells with 95 % intervals, markdown / JSON tables, PNG curves;
- `run`: the command's library: problem sets, models, the benchmark x method x budget loop (`evaluate`).
"""

from rstar_jax.evaluation.methods import EvalModels, Meter, budgeted_config, needs_reward, run_chunk
from rstar_jax.evaluation.run import evaluate, load_models, load_problem_sets
from rstar_jax.evaluation.store import PredictionFile, read_rows
from rstar_jax.evaluation.summary import Cell, summarise, write_curves, write_tables

__all__ = [
    "Cell",
    "EvalModels",
    "Meter",
    "PredictionFile",
    "budgeted_config",
    "evaluate",
    "load_models",
    "load_problem_sets",
    "needs_reward",
    "read_rows",
    "run_chunk",
    "summarise",
    "write_curves",
    "write_tables",
]
