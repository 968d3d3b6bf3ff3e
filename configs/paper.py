"""The paper's per-round recipe (rstar_reference.md Part A "rounds"), shared by configs/round1.py … round4.py.

Round 1 bootstraps with terminal-guided MCTS and 8 rollouts (the reference ships 48 by mistake); round 2 uses the
round-1 policy, terminal-guided, 16 rollouts; rounds 3 and 4 add the previous round's PPM (q0 initialisation), 16
rollouts. Sampling temperature and the consecutive-error threshold follow the reference's bootstrap and
round-2-to-4 configs. Without `data.train_file` the toy domain stands in for the training problems.
"""

from rstar_jax.config import RunConfig, SearchConfig


def round_config(r: int) -> RunConfig:
    bootstrap = r == 1
    return RunConfig(
        workdir=f"workdir/round{r}",
        first_round=r,
        last_round=r,
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
