#!/bin/bash
# TPU_NAME=my-v4-16 ZONE=us-central2-b bash launch/cluster/tpu_round2.sh   (DRY_RUN=1: check locally, no launch)
#
# Round 2 of the recipe (configs/round2.py) on every worker of a TPU-VM pod slice at once (gcloud ... --worker=all);
# each worker runs one process, and jax.distributed detects the slice's coordinator, process count and id itself.
# The repository and its virtual environment must be at $REPO on every worker, Qwen2.5-Math-7B at $BASE.
# Until the search is split by process (README, "Running on a cluster"), launch.evolve needs a one-worker slice.
set -euo pipefail

BASE=${BASE:-/models/Qwen2.5-Math-7B}
PROBLEMS=${PROBLEMS:-/data/problems.jsonl}
WORKDIR=${WORKDIR:-/mnt/shared/rstar/paper}     # a filesystem shared by every worker (NFS / Filestore)
REPO=${REPO:-~/rstar_jax}
TENSOR=${TENSOR:-1}

ARGS="-m launch.evolve --config=configs/round2.py --config.model.base=$BASE --config.data.train_file=$PROBLEMS \
--config.workdir=$WORKDIR --config.mesh.tensor=$TENSOR --config.mesh.fsdp=-1 --config.model.dtype=bfloat16 $*"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  exec ${PYTHON:-python} $ARGS --dry_run
fi
exec gcloud compute tpus tpu-vm ssh "${TPU_NAME:?set TPU_NAME}" --zone="${ZONE:?set ZONE}" --worker=all \
  --command="cd $REPO && .venv/bin/python $ARGS"
