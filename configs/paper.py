"""The paper's per-round recipe (rstar_reference.md Part A "rounds"), shared by configs/round1.py … round4.py.

Round 1 bootstraps with terminal-guided MCTS and 8 rollouts (the reference ships 48 by mistake); round 2 uses the
round-1 policy, terminal-guided, 16 rollouts; rounds 3 and 4 add the previous round's PPM (q0 initialisation), 16
rollouts; round 4 then searches its still-unsolved problems again with 64 rollouts, and those still unsolved with
128 (new seeds each time). Step pairs closer than 20 character edits are dropped (the reference's
train/sample_rm_data.py). Sampling temperature and the consecutive-error threshold follow the reference's bootstrap and
round-2-to-4 configs. Without `data.train_file` the toy domain stands in for the training problems; with it,
`model.base` names the base checkpoint (HF directory, e.g. Qwen2.5-Math-7B) and `model.bootstrap` or
`model.endpoint` the round-1 policy.
"""

from rstar_jax.config import EvolveConfig, RunConfig, SearchConfig, TrainConfig


def round_config(r: int) -> RunConfig:
    """Round r of the recipe; all four share `workdir/paper`, so round r reads round r-1's policy and PPM there.

    Every call builds its own configs, so an override of one never changes another (nothing here is a module global).
    """
    bootstrap = r == 1
    # rstar_reference.md Part B §9: SFT 128 sequences per step, PPM 512 pairs per step, 2 epochs, lr 7e-6, linear;
    # in micro-batches of 8 sequences / 4 pairs, so 7B fits 8 x 80 GB on mesh fsdp=4, tensor=2 (README, launch.plan).
    train = dict(epochs=2.0, max_length=2048, learning_rate=7e-6)
    return RunConfig(
        workdir="workdir/paper",
        first_round=r,
        last_round=r,
        evolve=EvolveConfig(
            bootstrap_rollouts=8,
            unsolved_rollouts=64,
            unsolved_more_rollouts=(128,),
            ppm_from_round=3,
            eval_samples=16,
            pair_min_edit_distance=20,
        ),
        sft=TrainConfig(**train, batch_size=8, accum_steps=16, weight_decay=0.1),
        ppm=TrainConfig(**train, batch_size=4, accum_steps=128, weight_decay=0.0),
        search=SearchConfig(
            rollouts=8 if bootstrap else 16,
            samples_per_expansion=12,
            c_puct=2.0,
            max_depth=16,
            temperature=0.7 if bootstrap else 1.0,
            errors_threshold=2 if bootstrap else 1,
            max_step_tokens=2048,
            stop_strings=("<end_of_step>", "<end_of_code>", "<end_of_output>", "<end_of_answer>")
            if bootstrap
            else ("<end_of_step>", "<end_of_code>", "<end_of_answer>"),
            batch_problems=3000,
        ),
    )
