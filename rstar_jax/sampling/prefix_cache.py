"""Host-side prefix cache: a token trie whose nodes own slots of a device KV pool.

Every trie node stands for one token at one position of some prompt that was prefilled before; its `slot` is
where that token's keys and values live in the pool (`kv_pool.KVPool`, `[L, SLOTS, K, H]`). Expanding a tree
node prefills only the tokens past the longest cached prefix of its prompt; siblings share the parent's slots
(no copies: the pool is gathered by slot index). Slot 0 is a scratch slot that padding writes into.

When the pool is full, least-recently-used leaves are evicted (a leaf's slot is freed, and its parent may then
become a leaf). Nodes pinned by the batch being assembled are never evicted.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

SCRATCH_SLOT = 0


class _Node:
    __slots__ = ("children", "last_used", "parent", "slot", "token")

    def __init__(self, token: int, slot: int, parent: _Node | None):
        self.token, self.slot, self.parent = token, slot, parent
        self.children: dict[int, _Node] = {}
        self.last_used = 0


@dataclasses.dataclass
class CacheStats:
    """Counters since creation: prompt tokens looked up, tokens served from the cache, tokens prefilled."""

    lookups: int = 0
    prompt_tokens: int = 0
    hit_tokens: int = 0
    prefilled_tokens: int = 0
    evicted_tokens: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / max(self.prompt_tokens, 1)


class PrefixCache:
    """Token trie + slot allocator for a pool of `num_slots` slots (slot 0 reserved).

    Use: `plan(tokens)` -> (cached_slots, write_slots) for one prompt, holding those nodes until
    `release()`; after the prefill wrote the new keys/values at `write_slots`, the nodes stay cached.
    """

    def __init__(self, num_slots: int):
        if num_slots < 2:
            raise ValueError(f"PrefixCache: num_slots={num_slots} must be >= 2 (slot 0 is scratch)")
        self.num_slots = num_slots
        self._root = _Node(-1, SCRATCH_SLOT, None)
        self._free = list(range(num_slots - 1, 0, -1))
        self._clock = 0
        self._pinned: set[int] = set()
        self._pending: set[int] = set()  # nodes created since the last release: keys/values not written yet
        self.stats = CacheStats()

    @property
    def used_slots(self) -> int:
        return self.num_slots - 1 - len(self._free)

    def match(self, tokens: Sequence[int]) -> list[int]:
        """Slots of the longest cached prefix of `tokens` (read-only, no bookkeeping)."""
        node, slots = self._root, []
        for tok in tokens:
            child = node.children.get(int(tok))
            if child is None:
                break
            node = child
            slots.append(node.slot)
        return slots

    def plan(self, tokens: Sequence[int]) -> tuple[int, list[int], list[int]]:
        """Reserve the trie path of `tokens` ([P] ids, P >= 1) for one prefill.

        Returns (cached, prefix_slots, write_slots): the first `cached` tokens (at most P - 1, so the last
        token is always run to get its logits) are read from `prefix_slots`; the other P - cached tokens
        are prefilled and their keys/values written to `write_slots`. Raises if the pool cannot hold them.
        """
        if not len(tokens):
            raise ValueError("PrefixCache.plan: empty prompt (at least one token is needed)")
        self._clock += 1
        node, path = self._root, []
        for tok in tokens:
            child = node.children.get(int(tok))
            if child is None:
                break
            node = child
            path.append(node)
        written = next((i for i, n in enumerate(path) if id(n) in self._pending), len(path))
        cached = min(written, len(tokens) - 1)
        for n in path:
            n.last_used = self._clock
            self._pinned.add(id(n))
        # Tokens past `cached` that already have nodes (the last token of a fully cached prompt, or nodes
        # another prompt of this batch is about to write) are recomputed and rewritten in place.
        write_slots = [n.slot for n in path[cached:]]
        missing = len(tokens) - len(path)
        if missing > len(self._free):
            self._evict(missing - len(self._free))
        if missing > len(self._free):
            raise RuntimeError(
                f"PrefixCache: a prompt needs {missing} new slots but only {len(self._free)} of {self.num_slots} "
                "can be freed; raise the pool size (slots) or send smaller batches"
            )
        for tok in tokens[len(path) :]:
            child = _Node(int(tok), self._free.pop(), node)
            child.last_used = self._clock
            node.children[child.token] = child
            self._pinned.add(id(child))
            self._pending.add(id(child))
            node = child
            write_slots.append(child.slot)
        self.stats.lookups += 1
        self.stats.prompt_tokens += len(tokens)
        self.stats.hit_tokens += cached
        self.stats.prefilled_tokens += len(tokens) - cached
        return cached, [n.slot for n in path[:cached]], write_slots

    def release(self) -> None:
        """Unpin every node reserved by `plan` since the last release (call after the prefill ran)."""
        self._pinned.clear()
        self._pending.clear()

    def _evict(self, needed: int) -> None:
        """Free at least `needed` slots (or all that can be freed), least recently used leaves first."""
        heap: list[tuple[int, int, _Node]] = []
        stack = list(self._root.children.values())
        while stack:
            n = stack.pop()
            stack.extend(n.children.values())
            if not n.children and id(n) not in self._pinned:
                heapq.heappush(heap, (n.last_used, id(n), n))
        freed = 0
        while heap and freed < needed:
            _, _, n = heapq.heappop(heap)
            parent = n.parent
            assert parent is not None
            del parent.children[n.token]
            self._free.append(n.slot)
            freed += 1
            if parent is not self._root and not parent.children and id(parent) not in self._pinned:
                heapq.heappush(heap, (parent.last_used, id(parent), parent))
        self.stats.evicted_tokens += freed
