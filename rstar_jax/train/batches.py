"""Tokenised examples as fixed-shape numpy arrays, and the deterministic, resumable micro-batch stream.

Every view (SFT, PPM pairs, ORM pairs, PQM values) becomes an `Examples`: a dict of `[N, ...]` arrays plus the
problem id of each example. The stream visits the examples epoch by epoch, each epoch in its own permutation
drawn from (seed, epoch), so micro-batch k is a pure function of (seed, k): resuming at a data position needs
nothing but k. Length grouping: the permutation is cut into windows of `window` micro-batches, each window is
sorted by sequence length and cut into micro-batches, and the micro-batches of a window are shuffled, so a batch
holds sequences of similar length (little padding) while the order of batches stays random. Sequences are
right-padded to a fixed `max_length`; `trim_padding` then cuts each batch's shared right padding to a multiple of
a bucket (one compiled shape per bucket).

Shapes: N examples, T = max_length, A micro-batches per optimizer step, B examples per micro-batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rstar_jax.search.steps import build_prompt

__all__ = [
    "RECORD_FIELDS",
    "Encoder",
    "Examples",
    "RecordError",
    "check_records",
    "document_examples",
    "pad_right",
    "pair_examples",
    "real_tokens",
    "sft_examples",
    "trim_padding",
    "value_examples",
]

Encoder = Callable[[str], list[int]]

RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("query", "response", "id"),
    "ppm": ("prompt", "pos", "neg", "pos_count", "neg_count", "id"),
    "orm": ("prompt", "pos", "neg", "pos_count", "neg_count", "id"),
    "pqm": ("text", "q", "id"),
}
"""The fields each kind of training record needs (`rstar_jax.extract` writes them); others are ignored."""


class RecordError(ValueError):
    """A training record of the wrong shape; the message names the file, the record's index and the field."""


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", str: "a string", int: "an integer", float: "a number"}
    return names.get(type(value), "a list" if isinstance(value, list) else "an object")


def _field_problem(name: str, value: Any) -> str | None:
    """What is wrong with field `name` of a record (None: nothing)."""
    if name in ("query", "response", "prompt", "pos", "neg", "text"):
        return None if isinstance(value, str) else f"must be a string, got {_json_type(value)}"
    if name == "id":
        ok = isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip()
        return None if ok else f"must be a non-empty string or integer, got {value!r}"
    if name in ("pos_count", "neg_count"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else f"must be an integer >= 0, got {value!r}"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)  # q
    return None if ok else f"must be a finite number, got {value!r}"


def check_records(kind: str, records: Any, source: str, *, allow_empty: bool = False) -> None:
    """Raises `RecordError` naming `source`, the record's index and the field when `records` is not a list of `kind`
    records (`RECORD_FIELDS`; a record of another kind is named as such), or is empty (unless `allow_empty`)."""
    fields = RECORD_FIELDS[kind]
    a_kind = f"{'an' if kind in ('sft', 'orm') else 'a'} {kind}"
    if not isinstance(records, list):
        raise RecordError(f"{source}: expected a JSON list of {kind} records, got {_json_type(records)}")
    if not records and not allow_empty:
        raise RecordError(f"{source}: no records (an empty list); {a_kind} record has fields {', '.join(fields)}")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RecordError(
                f"{source}: record {i} is {_json_type(record)}, expected an object with fields {', '.join(fields)}"
            )
        missing = [f for f in fields if f not in record]
        if missing:
            like = [k for k, f in RECORD_FIELDS.items() if k != kind and set(f) <= record.keys()]
            hint = f"; it looks like {like[0]} data (--kind={like[0]}?)" if like else ""
            raise RecordError(
                f"{source}: record {i} has no field {missing[0]!r} ({a_kind} record has {', '.join(fields)}){hint}"
            )
        for name in fields:
            problem = _field_problem(name, record[name])
            if problem:
                raise RecordError(f"{source}: record {i}: field {name!r} {problem}")


@dataclasses.dataclass(frozen=True)
class Examples:
    """arrays: name -> `[N, ...]`; ids: the problem id of each of the N examples."""

    arrays: dict[str, np.ndarray]
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, fraction: float, seed: int) -> tuple[Examples, Examples]:
        """(train, held-out) with about `fraction` of the examples held out (at least 1 when fraction > 0)."""
        n_eval = 0 if fraction <= 0 else max(1, round(len(self) * fraction))
        order = np.random.default_rng([seed, 7]).permutation(len(self))
        return self.take(order[n_eval:]), self.take(order[:n_eval])

    def take(self, index: np.ndarray) -> Examples:
        return Examples({k: v[index] for k, v in self.arrays.items()}, tuple(self.ids[i] for i in index))

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """`[N]` real tokens of each example (the longest of its `*mask` arrays)."""
        masks = [v.reshape(len(self), -1).sum(1) for k, v in self.arrays.items() if k.endswith("mask")]
        return np.max(masks, axis=0) if masks else np.zeros(len(self), np.int64)

    def epoch_order(self, epoch: int, batch: int, seed: int, window: int = 1) -> np.ndarray:
        """`[N]` the example order of `epoch`: a permutation from (seed, epoch), length-grouped in windows of
        `window` micro-batches of `batch` (module docstring; window 1: the plain permutation). The last two
        orders are cached (a step asks for the same epoch again)."""
        cache = self.__dict__.setdefault("_orders", {})
        key = (epoch, batch, seed, window)
        if key not in cache:
            if len(cache) >= 2:
                cache.pop(next(iter(cache)))
            cache[key] = self._epoch_order(epoch, batch, seed, window)
        return cache[key]

    def _epoch_order(self, epoch: int, batch: int, seed: int, window: int) -> np.ndarray:
        order = np.random.default_rng([seed, epoch]).permutation(len(self))
        if window <= 1:
            return order
        rng = np.random.default_rng([seed, epoch, 1])
        span = window * batch
        out = []
        for w in range(0, len(order), span):
            part = order[w : w + span]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            full = len(part) // batch * batch  # a last, partial micro-batch stays at the end of the epoch
            chunks = [part[i : i + batch] for i in range(0, full, batch)]
            out.extend([*(chunks[i] for i in rng.permutation(len(chunks))), part[full:]])
        return np.concatenate(out)

    def micro_batches(
        self, start: int, count: int, batch: int, seed: int, window: int = 1
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Micro-batches start .. start+count-1 of the stream, stacked: arrays `[A=count, B=batch, ...]`."""
        if len(self) == 0:
            raise ValueError("rstar_jax/train/batches.py: no training examples")
        n = len(self)
        positions = np.arange(start * batch, (start + count) * batch)
        index = np.empty_like(positions)
        for epoch in np.unique(positions // n):
            sel = positions // n == epoch
            index[sel] = self.epoch_order(int(epoch), batch, seed, window)[positions[sel] % n]
        out = {k: v[index].reshape(count, batch, *v.shape[1:]) for k, v in self.arrays.items()}
        return out, [self.ids[i] for i in index]

    def eval_batches(self, batch: int) -> list[dict[str, np.ndarray]]:
        """The held-out examples in order, `[1, B, ...]` each; the last batch wraps around to fill B."""
        n = len(self)
        chunks = [np.arange(s, s + batch) % n for s in range(0, n, batch)]
        return [{k: v[idx][None] for k, v in self.arrays.items()} for idx in chunks]


def real_tokens(arrays: dict[str, np.ndarray]) -> int:
    """The real (not padding) tokens a batch feeds the model: the sum of its input masks (`loss_mask` excluded)."""
    return int(sum(v.sum() for k, v in arrays.items() if k.endswith("mask") and k != "loss_mask"))


def trim_padding(arrays: dict[str, np.ndarray], bucket: int = 64) -> dict[str, np.ndarray]:
    """Cuts the right padding a whole batch shares: `[A, B, T, ...]` arrays -> `[A, B, T', ...]`.

    T' = the longest real sequence over every `*mask` array (bools, right-padded), rounded up to a multiple of
    `bucket` and capped at T (at least one bucket). Arrays whose axis 2 is not T (`weight [A, B]`, `target [A, B]`)
    are left as they are. Padded positions are masked out of every loss, so the losses do not change.
    """
    masks = [v for k, v in arrays.items() if k.endswith("mask") and v.ndim >= 3]
    if not masks:
        return arrays
    T = masks[0].shape[2]
    used = np.zeros(T, bool)  # [T] any example of any mask has a real token there
    for m in masks:
        used |= m.any(axis=tuple(i for i in range(m.ndim) if i != 2))
    longest = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 0
    length = min(T, max(1, -(-longest // bucket)) * bucket)
    if length == T:
        return arrays
    return {k: v[:, :, :length] if v.ndim >= 3 and v.shape[2] == T else v for k, v in arrays.items()}


def pad_right(seqs: Sequence[list[int]], length: int, dtype: Any = np.int32) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads to `[N, T]` tokens and the `[N, T]` bool mask of real tokens."""
    tokens = np.zeros((len(seqs), length), dtype)
    mask = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = s
        mask[i, : len(s)] = True
    return tokens, mask


def document_examples(token_ids: Sequence[Sequence[int]], ids: Sequence[str], eos_id: int, max_length: int) -> Examples:
    """Language-model examples of whole documents (pretraining): tokens, mask, loss_mask `[N, T]`; every token
    after the first, and the appended EOS, is predicted; a document longer than `max_length` keeps its head."""
    tokens, mask = pad_right([[*x, eos_id][:max_length] for x in token_ids], max_length)
    return Examples({"tokens": tokens, "mask": mask, "loss_mask": mask.copy()}, tuple(ids))


def sft_examples(records: Sequence[dict[str, Any]], encode: Encoder, eos_id: int, max_length: int) -> Examples:
    """`{query, response}` records -> tokens, mask `[N, T]` and `loss_mask [N, T]` (response tokens + EOS only).

    The prompt is Part A's one-newline template (`build_prompt`); prompt and response are encoded separately and
    concatenated, the response followed by EOS; an over-long example keeps its head (as the reference does).
    """
    seqs, prompt_lens = [], []
    for r in records:
        prompt, response = encode(build_prompt(r["query"], ())), encode(r["response"]) + [eos_id]
        if len(prompt) >= max_length:
            raise ValueError(
                f"rstar_jax/train/batches.py: record {r.get('id')!r}: prompt of {len(prompt)} tokens leaves no "
                f"room for the response within max_length={max_length}"
            )
        seqs.append((prompt + response)[:max_length])
        prompt_lens.append(len(prompt))
    tokens, mask = pad_right(seqs, max_length)
    loss_mask = mask & (np.arange(max_length)[None, :] >= np.asarray(prompt_lens)[:, None])
    return Examples({"tokens": tokens, "mask": mask, "loss_mask": loss_mask}, tuple(str(r["id"]) for r in records))


def pair_examples(records: Sequence[dict[str, Any]], encode: Encoder, max_length: int) -> Examples:
    """`{prompt, pos, neg, pos_count, neg_count}` -> pos/neg tokens and masks `[N, T]`, `weight [N]`.

    weight = 1 / (pos_count · neg_count) (1 / (pos_count + neg_count) if a count is 0, as the reference).
    Sequences are `ids(prompt) + ids(step)` cut to `max_length` keeping the head.
    """
    pos, neg, weight = [], [], []
    for r in records:
        p = encode(r["prompt"])
        pos.append((p + encode(r["pos"]))[:max_length])
        neg.append((p + encode(r["neg"]))[:max_length])
        n_pos, n_neg = int(r["pos_count"]), int(r["neg_count"])
        weight.append(1.0 / (n_pos * n_neg) if n_pos and n_neg else 1.0 / max(n_pos + n_neg, 1))
    pos_tokens, pos_mask = pad_right(pos, max_length)
    neg_tokens, neg_mask = pad_right(neg, max_length)
    arrays = {
        "pos_tokens": pos_tokens,
        "pos_mask": pos_mask,
        "neg_tokens": neg_tokens,
        "neg_mask": neg_mask,
        "weight": np.asarray(weight, np.float32),
    }
    return Examples(arrays, tuple(str(r["id"]) for r in records))


def value_examples(records: Sequence[dict[str, Any]], encode: Encoder, max_length: int) -> Examples:
    """`{text, q, id}` (PQM view: a prefix ending at a step, and that step's Q) -> tokens, mask, `target [N]`."""
    tokens, mask = pad_right([encode(r["text"])[:max_length] for r in records], max_length)
    target = np.asarray([float(r["q"]) for r in records], np.float32)
    return Examples({"tokens": tokens, "mask": mask, "target": target}, tuple(str(r["id"]) for r in records))
