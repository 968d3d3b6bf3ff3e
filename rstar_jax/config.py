"""The typed configuration tree of an rstar_jax run.

Configs are slotted dataclasses (a misspelt attribute cannot be set) built by `configs/*.py:get_config()` and
overridden on the command line through ml_collections `config_flags` (`--config.search.rollouts=16`). Field
constraints live next to each field as metadata; `rstar_jax.config_validation.validate(cfg)` checks every field's
type and range after the overrides and raises `ConfigError` naming the key, the value and what is allowed. The
config is read-only after validation: library code never mutates it.

Sections: `data` (problem files, benchmarks), `toy` (the embedded toy domain), `search` (MCTS), `execution` (the
code executor), `grading` (answer checking), `model` (checkpoints), `toy_model` (the toy's tiny decoder), `teacher`
(the toy bootstrap teacher), `evolve` (the round recipe), `sft` and `ppm` (the two training loops), `mesh` (the
device mesh every stage runs on) and `distributed` (jax.distributed across hosts), plus run-level fields (seed,
workdir, rounds).
"""

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from rstar_jax.config_choices import (
    SCRATCH_BASE,
    BudgetAxis,
    ConfigError,
    Decay,
    DType,
    EvalMethod,
    RewardKind,
    SftInit,
    ToyBand,
    UnvisitedRule,
)

__all__ = [
    "ConfigError",
    "DType",
    "DataConfig",
    "Decay",
    "BudgetAxis",
    "DistributedConfig",
    "EvalConfig",
    "EvalMethod",
    "EvolveConfig",
    "ExecutionConfig",
    "RewardKind",
    "GradingConfig",
    "MeshSetup",
    "ModelSetup",
    "SCRATCH_BASE",
    "RunConfig",
    "SearchConfig",
    "SftInit",
    "TeacherConfig",
    "ToyBand",
    "ToyBaseConfig",
    "ToyConfig",
    "ToyModelConfig",
    "TrainConfig",
    "UnvisitedRule",
    "to_dict",
]


def _field(default: Any, doc: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None):
    """A dataclass field with a docstring and optional numeric bounds (checked by `validate`)."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le}
    if isinstance(default, list | dict | set):
        raise TypeError("mutable config defaults are not allowed; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def _section(cls: type) -> Any:
    return dataclasses.field(default_factory=cls, metadata={"doc": cls.__doc__.splitlines()[0]})


@dataclasses.dataclass(slots=True)
class DataConfig:
    """Problem files and benchmarks."""

    benchmark_dir: str = _field(
        "", "directory of the nine benchmark files; '' = $RSTAR_BENCHMARK_DIR or ../shared/data/benchmarks"
    )
    train_file: str = _field("", "problems to search on (JSON list, {'example': [...]}, JSONL); '' = toy domain")
    eval_benchmarks: tuple[str, ...] = _field(
        (),
        "benchmarks a real-data run (`train_file`) evaluates each round on, e.g. ('math500',); training problems "
        "matching an evaluated question are dropped (counted in the problems manifest). The toy only counts them",
    )
    eval_subset: int = _field(
        0,
        "at most this many problems per evaluated benchmark, chosen by sha256(f'{seed}:{id}') rank and kept in file "
        "order (rstar_jax/data/held_out.py); 0 = all",
        ge=0,
    )
    skip_bad_records: bool = _field(False, "skip malformed problem records (reported and counted) instead of failing")
    reference_dir: str = _field(
        "",
        "directory of the reference's mcts_prompt.json and few_shots.json (round 1's few-shot prompt, "
        "`evolve.bootstrap_shots`); '' = $RSTAR_REFERENCE_DIR or ../shared/data/reference_records",
    )


@dataclasses.dataclass(slots=True)
class ToyConfig:
    """The embedded toy domain: seeded multi-step arithmetic word problems."""

    seed: int = _field(0, "generator seed; train and test splits are disjoint for any seed")
    train_per_band: int = _field(200, "training problems per difficulty band", ge=1)
    test_per_band: int = _field(50, "held-out test problems per difficulty band", ge=1)
    bands: tuple[ToyBand, ...] = _field(tuple(ToyBand), "difficulty bands to generate")


@dataclasses.dataclass(slots=True)
class SearchConfig:
    """Monte Carlo tree search (rstar_reference.md Part A)."""

    rollouts: int = _field(8, "MCTS rollouts per problem (paper: 8 in round 1, 16 after)", ge=1)
    samples_per_expansion: int = _field(8, "candidate steps sampled per expanded node (n)", ge=1)
    c_puct: float = _field(2.0, "UCT exploration constant c", gt=0.0)
    max_depth: int = _field(16, "maximum steps per trajectory", ge=1)
    unvisited: UnvisitedRule = _field(UnvisitedRule.ZERO, "UCT score of unvisited children")
    first_answer_only: bool = _field(True, "keep only the first answer among an expansion's samples (reference)")
    backup_dead_ends: bool = _field(False, "back up -1 from code-error / too-deep nodes (reference: local only)")
    errors_threshold: int = _field(1, "consecutive code errors that make a node terminal", ge=1)
    temperature: float = _field(1.0, "sampling temperature for candidate steps", ge=0.0)
    max_step_tokens: int = _field(256, "token limit of one generated step", ge=1)
    batch_problems: int = _field(64, "problems searched in lock-step", ge=1)
    stop_strings: tuple[str, ...] = _field(
        ("<end_of_step>", "<end_of_code>", "<end_of_answer>"),
        "stop strings of a step (rounds >= 2 and eval; the bootstrap adds '<end_of_output>')",
    )
    beam_width: int = _field(8, "step-level beam search: beam width (answers found shrink it)", ge=1)
    protocol_runs: int = _field(4, "paper protocol: independent MCTS runs per problem (paper: 64)", ge=1)
    protocol_top_k: int = _field(4, "paper protocol: best answers by PPM kept for the majority vote", ge=1)


@dataclasses.dataclass(slots=True)
class ExecutionConfig:
    """The sandboxed executor that runs model-written code."""

    timeout_s: float = _field(10.0, "wall-clock limit per program in seconds", gt=0.0)
    memory_mb: int = _field(1024, "address-space limit per program in MiB", ge=64)
    max_output_chars: int = _field(1024, "output kept per program (head and tail)", ge=16)
    workers: int = _field(0, "parallel worker processes; 0 = one per CPU core", ge=0)
    round_floats: bool = _field(False, "round printed floats to 4 decimals as the reference does")


@dataclasses.dataclass(slots=True)
class GradingConfig:
    """Answer extraction and equivalence checking."""

    timeout_s: float = _field(5.0, "hard limit per equivalence check; a timeout counts as not equal", gt=0.0)
    percent_as_fraction: bool = _field(True, "treat '50%' as equal to 0.5")


@dataclasses.dataclass(slots=True)
class TrainConfig:
    """The optax training loop shared by SFT, PPM, ORM and PQM (rstar_jax/train): sections `sft` and `ppm`."""

    steps: int = _field(1000, "optimizer steps (each one = `accum_steps` micro-batches)", ge=1)
    epochs: float = _field(0.0, "when > 0: steps = ceil(epochs x examples / (batch_size x accum_steps))", ge=0.0)
    batch_size: int = _field(8, "sequences (SFT) or pairs (PPM / ORM) per micro-batch", ge=1)
    accum_steps: int = _field(1, "micro-batches accumulated per optimizer step", ge=1)
    max_length: int = _field(2048, "tokens per sequence; longer examples are cut (SFT: tail, PPM: head kept)", ge=8)
    length_window: int = _field(
        1, "micro-batches per length-sorted window (batches of similar length, less padding); 1 = plain shuffle", ge=1
    )
    learning_rate: float = _field(7e-6, "peak AdamW learning rate", gt=0.0)
    warmup_steps: int = _field(0, "linear warmup steps from 0 to the peak", ge=0)
    decay: Decay = _field(Decay.LINEAR, "decay after warmup: 'linear' or 'cosine' (to 0 at `steps`)")
    weight_decay: float = _field(0.1, "AdamW decoupled weight decay", ge=0.0)
    max_grad_norm: float = _field(1.0, "global gradient-norm clip; 0 = off", ge=0.0)
    compute_dtype: DType = _field(
        DType.BFLOAT16, "activation / matmul dtype: 'bfloat16' or 'float32' (params stay fp32)"
    )
    remat: bool = _field(
        False, "recompute each decoder layer in the backward pass (jax.checkpoint): less memory, ~1/3 more compute"
    )
    eval_every: int = _field(0, "evaluate on the held-out split every N steps; 0 = only at the end", ge=0)
    eval_fraction: float = _field(0.05, "held-out fraction of the examples", ge=0.0, le=0.5)
    save_every: int = _field(100, "checkpoint every N steps (and at the end)", ge=1)
    log_every: int = _field(10, "console / metrics.jsonl line every N steps", ge=1)
    seed: int = _field(42, "data order, held-out split and value-head init")


@dataclasses.dataclass(slots=True)
class TeacherConfig:
    """The toy domain's scripted bootstrap teacher (round 1), playing the paper's 236B model."""

    wrong_operand: float = _field(0.12, "rate of steps with a wrong number in the expression", ge=0.0, le=1.0)
    wrong_operation: float = _field(0.08, "rate of steps with a swapped operator", ge=0.0, le=1.0)
    code_error: float = _field(0.05, "rate of steps whose code raises at run time", ge=0.0, le=1.0)
    answer_error: float = _field(0.02, "rate of answer steps that miscopy the printed result", ge=0.0, le=1.0)


@dataclasses.dataclass(slots=True)
class ModelSetup:
    """The models of a run: the base checkpoint, the round-1 bootstrap policy, and how search loads them."""

    base: str = _field(
        "",
        "HF directory of the base model SFT starts from; '' = toy: the committed toy base (rstar_jax/toy/base, "
        "`launch.pretrain`); 'scratch' = toy: a tiny decoder initialised in the run (section `toy_model`)",
    )
    bootstrap: str = _field("", "round-1 policy: HF directory; '' = the toy teacher (toy) or `base` (real data)")
    endpoint: str = _field("", "round-1 policy served by an OpenAI-compatible completions API, e.g. http://h:8000/v1")
    endpoint_model: str = _field("", "model name sent to `endpoint`")
    dtype: DType = _field(DType.FLOAT32, "parameter dtype of loaded models for search: 'float32' or 'bfloat16'")
    pool_slots: int = _field(65536, "prefix-cache capacity of the sampling engine, in tokens", ge=256)
    max_rows: int = _field(256, "rows (prompts x samples) decoded together", ge=1)
    prefill_tokens: int = _field(
        16384,
        "at most this many prompt tokens (rows x bucketed length) per prefill call of the policy and the PPM: bounds "
        "their peak memory (a longer prompt goes alone)",
        ge=256,
    )
    length_buckets: int = _field(
        4,
        "prompt-length buckets per doubling of the policy and the PPM (a power of two): 1 pads prompts to powers of "
        "two (fewest programs to compile), 4 to 64, 80, 96, 112, 128, 160, ... (less padded prefill and attention)",
        ge=1,
        le=64,
    )


@dataclasses.dataclass(slots=True)
class MeshSetup:
    """The (data, fsdp, tensor) device mesh of every stage: search, sampling, scoring, evaluation, SFT and PPM.

    Parameters are sharded by their logical axes (`models.sharding.LOGICAL_AXIS_RULES`: embed over fsdp, heads /
    MLP / vocab over tensor), batches and KV-cache rows over data x fsdp. The default 1 x 1 x 1 is one device (the
    toy path); any other shape must use every device of the run, and one size may be -1 (what is left)."""

    data: int = _field(1, "data-parallel replicas (batch rows); -1 = the devices left over", ge=-1)
    fsdp: int = _field(1, "fully-sharded data parallelism (parameters over their embed axis); -1 = left over", ge=-1)
    tensor: int = _field(1, "tensor parallelism (heads, MLP, vocab); -1 = left over", ge=-1)


@dataclasses.dataclass(slots=True)
class DistributedConfig:
    """`jax.distributed.initialize` for runs over many hosts; all empty = auto-detect (SLURM, TPU VMs, Kubernetes)
    or one process."""

    coordinator: str = _field("", "host:port of process 0's coordinator; '' = auto-detected or one process")
    num_processes: int = _field(0, "processes in the run; 0 = auto-detected (1 without a cluster)", ge=0)
    process_id: int = _field(-1, "this process's index; -1 = auto-detected", ge=-1)


@dataclasses.dataclass(slots=True)
class ToyModelConfig:
    """The toy's tiny decoder, made by a run with `model.base=scratch` and by `launch.pretrain` (the toy base)."""

    vocab: int = _field(512, "BPE vocabulary size trained on the domain", ge=64)
    hidden: int = _field(128, "decoder width", ge=8)
    layers: int = _field(4, "decoder layers", ge=1)
    heads: int = _field(4, "attention heads", ge=1)
    kv_heads: int = _field(2, "key/value heads", ge=1)
    intermediate: int = _field(384, "MLP width", ge=8)
    max_positions: int = _field(512, "maximum sequence length", ge=64)
    read_per_band: int = _field(
        0, "reading-pretraining documents per band for the scratch base (section `pretrain`); 0 = none", ge=0
    )


@dataclasses.dataclass(slots=True)
class ToyBaseConfig:
    """The committed toy base (`python -m launch.pretrain --config=configs/toy_base.py`): its corpus and export.

    The model shape is section `toy_model`, the training `pretrain`; see `rstar_jax/toy/base_build.py`."""

    corpus_seed: int = _field(0, "seed of the base corpus (the toy generator's 'base' split)")
    corpus_per_band: int = _field(20000, "code-format solutions per band in the base corpus", ge=1)
    held_out_per_band: int = _field(40, "further base-split problems per band for the held-out greedy metric", ge=0)
    tokenizer_per_band: int = _field(2000, "corpus problems per band the BPE tokenizer is trained on", ge=1)
    out: str = _field("", "where the HF directory and manifest are exported; '' = the package's rstar_jax/toy/base")
    minutes: float = _field(0.0, "stop (checkpointed) after this much training time, then export; 0 = no limit", ge=0.0)


@dataclasses.dataclass(slots=True)
class EvolveConfig:
    """The self-evolution recipe around the search (rstar_reference.md Part A "rounds")."""

    bootstrap_rollouts: int = _field(8, "round-1 (bootstrap) MCTS rollouts; later rounds use search.rollouts", ge=1)
    bootstrap_shots: int = _field(
        2,
        "round 1 with a model as policy (model.endpoint / model.bootstrap / model.base): examples in the reference's "
        "few-shot prompt (data.reference_dir), shuffled per problem (reference: 2); 0 = the SFT template. The toy "
        "teacher and rounds >= 2 always use the SFT template",
        ge=0,
    )
    unsolved_rollouts: int = _field(64, "round 4: extra rollouts with new seeds for still-unsolved problems", ge=0)
    unsolved_more_rollouts: tuple[int, ...] = _field(
        (),
        "round 4: after the `unsolved_rollouts` search, one more search per entry, each of the problems still "
        "unsolved, with that many rollouts and new seeds (paper §3.4.2, 64 then up to 128: (128,)); () = none",
    )
    ppm_from_round: int = _field(3, "first round whose search uses the previous round's PPM (q0 init)", ge=2)
    sft_init: SftInit = _field(SftInit.BASE, "where each round's policy SFT starts")
    sft_per_problem: int = _field(2, "SFT trajectories kept per problem (top by mean Q)", ge=1)
    sft_replay: bool = _field(
        False, "round r's SFT data also keeps earlier rounds' records of problems round r did not solve (toy scale)"
    )
    pair_margin: float = _field(0.5, "minimum Q margin of a PPM step pair", ge=0.0)
    pair_min_edit_distance: int = _field(
        0,
        "drop PPM step pairs whose two steps are fewer than this many character edits apart (reference "
        "train/sample_rm_data.py: 20; configs/paper.py sets it); 0 = off",
        ge=0,
    )
    eval_samples: int = _field(8, "trajectories per held-out problem for votes, best-of-N and MCTS rollouts", ge=1)
    eval_problems: int = _field(0, "held-out problems evaluated per round; 0 = all", ge=0)
    eval_temperature: float = _field(0.8, "sampling temperature of the evaluation's sampled trajectories", ge=0.0)
    fixed_policy_eval: bool = _field(True, "also evaluate each PPM with the round-1 policy fixed (paper Table 4)")
    full_eval_rounds: tuple[int, ...] = _field(
        (1, 2, 3, 4),
        "rounds evaluated with every method (majority vote, best-of-N, MCTS + PPM, and with fixed_policy_eval the "
        "round-1 policy under the round's PPM, Table 4); the other rounds run greedy only (Table 3)",
    )
    report_trees: int = _field(
        6, "problems of each tree file shown in the round report's tree viewer pages (evenly spaced); 0 = none", ge=0
    )
    force: bool = _field(False, "rerun finished stages whose inputs changed instead of refusing")


@dataclasses.dataclass(slots=True)
class EvalConfig:
    """Test-time evaluation (`python -m launch.evaluate --config=configs/eval.py`): benchmarks x methods x budgets."""

    benchmarks: tuple[str, ...] = _field(
        ("toy",), "benchmark names (data.benchmark_dir), or 'toy' for the toy's test split, e.g. math500,aime2024"
    )
    problem_file: str = _field("", "also evaluate a problem file of your own (JSON list / JSONL, as data.train_file)")
    problems: int = _field(0, "problems per benchmark (the first ones, file order); 0 = all", ge=0)
    methods: tuple[EvalMethod, ...] = _field(tuple(EvalMethod), "test-time methods to run")
    budgets: tuple[int, ...] = _field(
        (8,),
        "strictly increasing budgets: trajectories (votes, best-of-N), beam width, MCTS rollouts, protocol runs; "
        "more than one draws accuracy-vs-budget curves",
    )
    budget_axis: BudgetAxis = _field(BudgetAxis.TRAJECTORIES, "x-axis of the curves")
    policy: str = _field("", "HF directory of the policy (required)")
    reward_model: str = _field("", "HF directory of the reward model; '' = only greedy and majority can run")
    reward_kind: RewardKind = _field(RewardKind.PPM, "what `reward_model` is (a label in the outputs)")
    temperature: float = _field(0.8, "sampling temperature of every method but greedy (temperature 0)", ge=0.0)
    chunk: int = _field(8, "problems run and written together (the unit a kill can lose)", ge=1)
    out: str = _field("", "output directory; '' = <workdir>/eval")


@dataclasses.dataclass(slots=True)
class RunConfig:
    """One rstar_jax run: what `python -m launch.evolve --config=...` executes."""

    seed: int = _field(0, "base seed; every problem derives its own seed from it")
    workdir: str = _field("workdir/tiny", "run directory (created; reruns resume from it)")
    first_round: int = _field(1, "first self-evolution round to run", ge=1, le=4)
    last_round: int = _field(1, "last self-evolution round to run", ge=1, le=4)
    progress_bars: bool = _field(True, "show progress bars (rate and ETA) on long loops")
    compile_cache: str = _field(
        "~/.cache/rstar_jax/xla",
        "persistent XLA compilation cache shared by runs (a resumed run, a rerun or the next round's process loads "
        "compiled programs instead of compiling them again); '' = off",
    )
    run_rounds: bool = _field(True, "run the self-evolution rounds after the data stages (false: data only)")
    data: DataConfig = _section(DataConfig)
    toy: ToyConfig = _section(ToyConfig)
    toy_base: ToyBaseConfig = _section(ToyBaseConfig)
    search: SearchConfig = _section(SearchConfig)
    execution: ExecutionConfig = _section(ExecutionConfig)
    grading: GradingConfig = _section(GradingConfig)
    model: ModelSetup = _section(ModelSetup)
    mesh: MeshSetup = _section(MeshSetup)
    distributed: DistributedConfig = _section(DistributedConfig)
    toy_model: ToyModelConfig = _section(ToyModelConfig)
    teacher: TeacherConfig = _section(TeacherConfig)
    evolve: EvolveConfig = _section(EvolveConfig)
    pretrain: TrainConfig = _section(TrainConfig)
    sft: TrainConfig = _section(TrainConfig)
    ppm: TrainConfig = _section(TrainConfig)
    eval: EvalConfig = _section(EvalConfig)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-serialisable data (enums as their values, tuples as lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)
