"""One process of tests/test_multihost.py: `python tests/multihost_worker.py PORT PROCESS_ID WORKDIR`.

Two of these on loopback (4 CPU devices each, gloo collectives) join through `rstar_jax.devices.initialize`, then
train the tiny SFT model of tests/test_train.py on one (data=1, fsdp=8) mesh over both processes' devices, with
checkpoints through orbax's multi-host path; process 0 writes metrics.jsonl.
"""

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flax import nnx  # noqa: E402

from rstar_jax.config import DistributedConfig, MeshSetup  # noqa: E402
from rstar_jax.devices import initialize, run_mesh  # noqa: E402
from rstar_jax.models import Decoder  # noqa: E402
from rstar_jax.train import sft_examples, sft_loss, train  # noqa: E402
from tests.test_train import CONFIG, EOS, encode, sft_records, small_cfg  # noqa: E402


def main() -> None:
    port, pid, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    initialize(DistributedConfig(coordinator=f"localhost:{port}", num_processes=2, process_id=pid))
    assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = run_mesh(MeshSetup(fsdp=-1))
    ex = sft_examples(sft_records(16), encode, EOS, 112)
    cfg = small_cfg(steps=2, batch_size=8, accum_steps=2, save_every=2)
    train(Decoder(CONFIG, rngs=nnx.Rngs(0)), sft_loss, ex, cfg=cfg, workdir=workdir, mesh=mesh, progress=False)
    print(f"process {pid}: done", flush=True)


if __name__ == "__main__":
    main()
