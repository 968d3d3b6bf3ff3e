"""Policy prompts of the tree search: the SFT template (every round after the bootstrap, and the toy teacher) and
the reference's few-shot bootstrap prompt (round 1 with a real policy or an endpoint).

A `Prompter` maps (question, node texts root -> current node, problem seed) to the policy prompt. The PPM always
reads the SFT template (`steps.build_prompt`), the format it is trained on, whatever prompted the policy.

Few-shot prompt (rstar_reference.md Part B §2.2, `rstar_prompt_wrap` with `mcts_prompt.json`, `few_shots.json`):

    instructions + "\\n" + header + "\\n" + shot_1 + "\\n" + ... + shot_k + "\\n" + "\\n" + suffix(Q + "\\n") + steps

with header "The following are k demonstration examples." (k > 1) or "The following is a demonstration example."
and suffix "Now! It's your turn.\\nQuestion: {input}". k = 1 takes the second shot, as the reference does; k > 1
takes `random.sample(shots, k)`, which the reference leaves unseeded: here it is seeded per problem (from its
seed, itself from the run seed and the problem id), so a problem's prompt is the same at every node and in every
rerun. The files are not shipped: they are read from a directory (`config.data.reference_dir`, else
`$RSTAR_REFERENCE_DIR`, else `../shared/data/reference_records` next to the repository).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rstar_jax.search.steps import build_prompt, derive_seed

__all__ = [
    "PROMPT_FILE",
    "REFERENCE_DIR_ENV",
    "SHOTS_FILE",
    "FewShotPrompt",
    "Prompter",
    "default_reference_dir",
    "sft_prompt",
]

Prompter = Callable[[str, Sequence[str], int], str]
"""(question, node texts root -> current node, problem seed) -> the policy prompt."""

REFERENCE_DIR_ENV = "RSTAR_REFERENCE_DIR"
PROMPT_FILE = "mcts_prompt.json"
SHOTS_FILE = "few_shots.json"
_DIR_KEY = "config.data.reference_dir"


def sft_prompt(question: str, node_texts: Sequence[str], seed: int) -> str:
    """The SFT template (`steps.build_prompt`); the seed is not used."""
    del seed
    return build_prompt(question, node_texts)


def default_reference_dir() -> Path:
    """``$RSTAR_REFERENCE_DIR`` if set, else ``<repo root>/../shared/data/reference_records`` (may not exist)."""
    env = os.environ.get(REFERENCE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "reference_records"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the reference's few-shot prompt file is missing (round 1's prompt for a real policy); set "
            f"{_DIR_KEY} or ${REFERENCE_DIR_ENV} to the directory holding {PROMPT_FILE} and {SHOTS_FILE}, or "
            "config.evolve.bootstrap_shots=0 for the SFT template"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


@dataclasses.dataclass(frozen=True)
class FewShotPrompt:
    """The reference's bootstrap prompt (module docstring); call it as a `Prompter`."""

    instructions: str
    suffix: str
    shots: tuple[str, ...]
    k: int
    digest: str  # sha256 of the two files, for the trees stage's inputs

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None, k: int) -> FewShotPrompt:
        """Reads `mcts_prompt.json` and `few_shots.json` from `directory` (None = `default_reference_dir()`).

        Raises:
          FileNotFoundError / ValueError naming the file, the field and the config key.
        """
        root = default_reference_dir() if directory is None else Path(directory).expanduser()
        prompt_path, shots_path = root / PROMPT_FILE, root / SHOTS_FILE
        prompt, shots = _read_json(prompt_path), _read_json(shots_path)
        fields = ("pot_format_instructions", "pot_suffix")
        if not isinstance(prompt, dict) or not all(isinstance(prompt.get(f), str) for f in fields):
            raise ValueError(f"{prompt_path}: expected a JSON object with string fields {', '.join(fields)}")
        if "{input}" not in prompt["pot_suffix"]:
            raise ValueError(f"{prompt_path}: field pot_suffix has no '{{input}}' for the question")
        if not isinstance(shots, list) or not all(isinstance(s, str) for s in shots):
            raise ValueError(f"{shots_path}: expected a JSON list of example solution strings")
        if not 1 <= k <= len(shots) or (k == 1 and len(shots) < 2):
            raise ValueError(
                f"{shots_path}: {len(shots)} examples; config.evolve.bootstrap_shots = {k} needs 1..{len(shots)} "
                "(and 1 takes the second example, as the reference)"
            )
        sha = hashlib.sha256(prompt_path.read_bytes() + b"\0" + shots_path.read_bytes()).hexdigest()[:16]
        return cls(prompt["pot_format_instructions"], prompt["pot_suffix"], tuple(shots), k, sha)

    def examples(self, seed: int) -> list[str]:
        """The shots of the problem whose seed is `seed`, in prompt order."""
        if self.k == 1:
            return [self.shots[1]]
        return random.Random(derive_seed("few-shot", seed)).sample(list(self.shots), self.k)

    def __call__(self, question: str, node_texts: Sequence[str], seed: int) -> str:
        examples = self.examples(seed)
        header = (
            f"The following are {len(examples)} demonstration examples."
            if len(examples) > 1
            else "The following is a demonstration example."
        )
        head = "\n".join([self.instructions, header, *examples, ""])
        return head + "\n" + self.suffix.replace("{input}", question + "\n") + "".join(node_texts)

    def identity(self) -> dict[str, Any]:
        """What this prompt is, for a stage's inputs."""
        return {"few_shot": self.k, "files_sha256": self.digest}
