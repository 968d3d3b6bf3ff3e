"""The pair filter's edit distance against a brute-force oracle (every alignment, by recursion)."""

import functools
import random

import pytest

from rstar_jax.extract.distance import edit_distance


def _oracle(a: str, b: str) -> int:
    """Levenshtein by its definition: the cheapest of delete / insert / substitute-or-keep on the first characters."""

    @functools.cache
    def d(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return (len(a) - i) + (len(b) - j)
        keep = d(i + 1, j + 1) + (a[i] != b[j])
        return min(keep, d(i + 1, j) + 1, d(i, j + 1) + 1)

    return d(0, 0)


def test_known_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "") == 0 and edit_distance("abc", "") == 3 and edit_distance("", "abcd") == 4
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("x = 3 + 4", "x = 3 + 5") == 1
    assert edit_distance("é√", "e√") == 1  # characters, not bytes


def test_matches_brute_force_oracle_with_and_without_limit():
    rng = random.Random(0)
    for _ in range(600):
        alphabet = "ab" if rng.random() < 0.5 else "abcde\n"
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:  # shared prefix / suffix, as sibling steps often have
            stem = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            a, b = stem + a + stem, stem + b
        truth = _oracle(a, b)
        assert edit_distance(a, b) == truth == edit_distance(b, a), (a, b)
        for limit in range(0, 15):
            assert edit_distance(a, b, limit) == min(truth, limit + 1), (a, b, limit)


def test_long_strings_with_a_limit():
    rng = random.Random(1)
    a = "".join(rng.choice("abcdefgh") for _ in range(3000))
    b = a[:1000] + "XYZ" + a[1010:2500] + a[2600:]
    assert edit_distance(a, b, 20) == 21  # 10 characters replaced by 3, and 100 deleted: far above the limit
    c = a[:1500] + "Q" + a[1501:]
    assert edit_distance(a, c, 20) == 1 and edit_distance(a, c) == 1
    with pytest.raises(ValueError, match="limit"):
        edit_distance("a", "b", -1)
