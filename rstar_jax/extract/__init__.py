"""Training data from search trees: SFT records, PPM preference pairs, difficulty classes, round dedup.

from rstar_jax.extract import extract_round
from rstar_jax.workdir import write_json
data = extract_round(read_records("round1/trees.jsonl"), seen=previous.seen)
write_json("round1/sft.json", data.sft, trainer_format=True)  # [{"query", "response", "id"}]
write_json("round1/ppm.json", data.pairs, trainer_format=True)  # [{"prompt", "pos", "neg", "pos_count", ...}]
"""

from rstar_jax.extract.data import (
    RoundData,
    edit_filter,
    extract_round,
    orm_pairs,
    ppm_pairs,
    pqm_values,
    reward_model_data,
    sft_records,
)
from rstar_jax.extract.trees import AnswerPath, Difficulty, Node, answer_paths, build_tree, classify

__all__ = [
    "Difficulty",
    "Node",
    "RoundData",
    "AnswerPath",
    "build_tree",
    "edit_filter",
    "classify",
    "extract_round",
    "orm_pairs",
    "ppm_pairs",
    "pqm_values",
    "reward_model_data",
    "sft_records",
    "answer_paths",
]
