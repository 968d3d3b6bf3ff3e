"""Tests for rstar_jax.toy.stats: length measures on hand-counted problems, and the CLI."""

import pytest

from rstar_jax.data import Problem
from rstar_jax.toy import length_stats, steps_text
from rstar_jax.toy.stats import main

STEPS = [{"var": "ava", "expr": "12", "comment": "start"}, {"var": "ava_2", "expr": "ava + 5", "comment": "more"}]
SHORT = Problem(id="t/0", question="Ava has 12 pens. Ava buys 5 more. How many?", answer="17", extra={"steps": STEPS})
LONG = Problem(
    id="t/1", question="Ben's 300 cards grow 2-fold. How many cards now?", answer="600", extra={"steps": STEPS}
)


def test_steps_text():
    assert steps_text(SHORT) == "ava = 12  # start\nava_2 = ava + 5  # more"


def test_length_stats_hand_counted():
    stats = length_stats([SHORT, LONG])
    # SHORT: 10 words; pieces Ava has 12 pens . Ava buys 5 more . How many ? = 13; digits split: 14.
    # LONG: 9 words; pieces Ben ' s 300 cards grow 2 - fold . How many cards now ? = 15; digits split: 17.
    assert stats["words"] == {"min": 9.0, "mean": 9.5, "p50": 10.0, "p95": 10.0, "max": 10.0}
    assert (stats["pieces"]["min"], stats["pieces"]["max"]) == (13.0, 15.0)
    assert (stats["digit_pieces"]["min"], stats["digit_pieces"]["max"]) == (14.0, 17.0)
    assert stats["chars"]["min"] == len(SHORT.question) and stats["step_chars"]["max"] == len(steps_text(LONG))
    with pytest.raises(ValueError, match="no problems"):
        length_stats([])


def test_cli_prints_every_band(capsys):
    main(["--n", "20", "--seed", "3"])
    out = capsys.readouterr().out
    for band in ("gsm", "math", "olympiad"):
        assert f"{band}: 20 problems" in out
    assert out.count("digit_pieces") == 3
