#!/bin/bash
# sbatch launch/cluster/slurm_round2.sh   (from the repository root; DRY_RUN=1 bash ... checks without launching)
#
# Round 2 of the recipe (configs/round2.py) from Qwen2.5-Math-7B on local disk, one task per node, every GPU of
# every node in one (data, fsdp, tensor) mesh. jax.distributed finds the coordinator, process count and process id
# in SLURM's environment (launch.evolve -> rstar_jax.devices.initialize). Edit the paths or export them.
# Until the search is split by process (README, "Running on a cluster"), run launch.evolve on one node: more nodes
# start correctly but every process would search every problem in the same workdir.
#SBATCH --job-name=rstar-round2
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

BASE=${BASE:-/models/Qwen2.5-Math-7B}            # HF directory on every node's local disk
PROBLEMS=${PROBLEMS:-/data/problems.jsonl}       # the training problems
WORKDIR=${WORKDIR:-/shared/rstar/paper}          # a shared filesystem: round 1's outputs are read from here
TENSOR=${TENSOR:-2}                              # tensor parallelism inside a node; fsdp takes the rest

ARGS=(
  -m launch.evolve
  --config=configs/round2.py
  --config.model.base="$BASE"
  --config.data.train_file="$PROBLEMS"
  --config.workdir="$WORKDIR"
  --config.mesh.tensor="$TENSOR"
  --config.mesh.fsdp=-1
  --config.model.dtype=bfloat16
  "$@"
)
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  exec "${PYTHON:-python}" "${ARGS[@]}" --dry_run
fi
exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 "${PYTHON:-python}" "${ARGS[@]}"
