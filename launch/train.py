"""python -m launch.train --config=configs/tiny.py --kind=sft --data=sft.json --model=HF_DIR --out=OUT_DIR

Trains one model of a round from extracted data (`rstar_jax.extract`) with the shared loop (`config.train`):

  * sft: the policy on `[{query, response}]`;
  * ppm: a PPM initialised from `--model` (the round's policy) with a fresh value head, on
    `[{prompt, pos, neg, pos_count, neg_count}]`, Bradley–Terry with 1/(n⁺·n⁻) weights;
  * orm: the same loss on whole-trajectory pairs (`extract.orm_pairs`);
  * pqm: the value head regressed on Q (`[{text, q, id}]`, `extract.pqm_values`).

Checkpoints and metrics.jsonl go to `<config.workdir>/train_<kind>`; a rerun resumes there. The result is
exported as an HF directory to `--out` (`*ForCausalLM` for sft, `*ForSequenceClassification` otherwise).
"""

from __future__ import annotations

import json
import os

from absl import flags, logging
from flax import nnx

from rstar_jax import cli, models
from rstar_jax.train import (
    bradley_terry_loss,
    pair_examples,
    pqm_loss,
    sft_examples,
    sft_loss,
    train,
    value_examples,
)

_CONFIG = cli.define_config_flag()
_KIND = flags.DEFINE_enum("kind", None, ["sft", "ppm", "orm", "pqm"], "what to train")
_DATA = flags.DEFINE_string("data", None, "JSON list of training records (see the module docstring)")
_MODEL = flags.DEFINE_string("model", None, "HF directory of the initial policy")
_OUT = flags.DEFINE_string("out", None, "HF directory to write the trained model to")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageExit(f"unexpected arguments: {' '.join(argv[1:])}")
    missing = [f"--{f.name}" for f in (_KIND, _DATA, _MODEL, _OUT) if f.value is None]
    if missing:
        raise cli.UsageExit(f"missing required flags: {', '.join(missing)}")
    cfg = cli.parsed_config(_CONFIG)
    t = cfg.train
    with open(_DATA.value, encoding="utf-8") as f:
        records = json.load(f)
    if not isinstance(records, list):
        raise cli.UsageExit(f"{_DATA.value}: expected a JSON list of records")
    policy = models.load_decoder(_MODEL.value)
    tokenizer = models.load_tokenizer(_MODEL.value, policy.config)
    models.add_rstar_tokens(tokenizer)
    policy = models.fit_embeddings(policy, len(tokenizer))

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    kind = _KIND.value
    if kind == "sft":
        eos = policy.config.eos_token_id
        eos_id = eos[0] if isinstance(eos, tuple) else eos
        if eos_id is None:
            raise cli.UsageExit(f"{_MODEL.value}/config.json: no eos_token_id; SFT targets end with EOS")
        model, loss, examples = policy, sft_loss, sft_examples(records, encode, eos_id, t.max_length)
    elif kind in ("ppm", "orm"):
        model = models.PPM.from_policy(policy, nnx.Rngs(t.seed))
        loss, examples = bradley_terry_loss, pair_examples(records, encode, t.max_length)
    else:
        model = models.PPM.from_policy(policy, nnx.Rngs(t.seed))
        loss, examples = pqm_loss, value_examples(records, encode, t.max_length)
    fit, held = examples.split(t.eval_fraction, t.seed)
    mesh = models.make_mesh(models.MeshConfig())
    workdir = os.path.join(cfg.workdir, f"train_{kind}")
    trained, summary = train(model, loss, fit, cfg=t, workdir=workdir, eval_examples=held, mesh=mesh)
    logging.info("launch.train %s: final %s", kind, summary)
    if kind == "sft":
        models.save_decoder(trained, _OUT.value, tokenizer=tokenizer)
    else:
        models.save_ppm(trained, _OUT.value, tokenizer=tokenizer)
    print(json.dumps({"kind": kind, "out": _OUT.value, **summary}))


if __name__ == "__main__":
    cli.run(main)
