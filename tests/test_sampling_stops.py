"""Stop strings on the host: split across tokens, inside a token, several stops, EOS, length, chunking."""

import pytest
from test_sampling_helpers import byte_bpe_tokenizer

from rstar_jax.interfaces import FinishReason
from rstar_jax.sampling import StopScanner

TEXT = "compute 3 + 4 = 7 and print the answer<end_of_step>x = 12 * 7<end_of_code>"
EOS = 2


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return byte_bpe_tokenizer(tmp_path_factory.mktemp("tok"))


def _run(tok, ids, stops, max_tokens=1000, chunk=1, eos=(EOS,)):
    scanner = StopScanner(tok, stops, eos, max_tokens, context=[])
    for i in range(0, len(ids), chunk):
        if scanner.feed(ids[i : i + chunk]):
            break
    if not scanner.done:
        scanner.feed([EOS])
    return scanner.step


def _expected_stop(tok, ids, stop):
    """Independent reference: the first token prefix whose decoded text contains `stop`, cut after it."""
    for m in range(1, len(ids) + 1):
        text = tok.decode(ids[:m], skip_special_tokens=False)
        if stop in text:
            return text[: text.index(stop) + len(stop)], m
    raise AssertionError(f"{stop!r} never appears")


def _token_spans(tok, ids):
    """[start, end) character span of each token in the decoded text."""
    spans, prev = [], 0
    for m in range(1, len(ids) + 1):
        end = len(tok.decode(ids[:m], skip_special_tokens=False))
        spans.append((prev, end))
        prev = end
    return spans


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_stop_split_across_tokens(tok, chunk):
    ids = tok(TEXT)["input_ids"]
    full = tok.decode(ids, skip_special_tokens=False)
    stop = "te 3 +"
    at = full.index(stop)
    spans = _token_spans(tok, ids)
    assert not any(s <= at and at + len(stop) <= e for s, e in spans), "the stop must span a token boundary"
    step = _run(tok, ids, [stop], chunk=chunk)
    text, m = _expected_stop(tok, ids, stop)
    assert (step.text, step.finish, step.stop, step.num_tokens) == (text, FinishReason.STOP, stop, m)
    assert step.text.endswith(stop) and step.text.count(stop) == 1


@pytest.mark.parametrize("chunk", [1, 5])
def test_stop_inside_a_token_followed_by_more_text(tok, chunk):
    ids = tok(TEXT)["input_ids"]
    pieces = [tok.decode([i], skip_special_tokens=False) for i in ids]
    full = tok.decode(ids, skip_special_tokens=False)
    # a stop string that ends strictly inside one token and appears nowhere earlier
    stop, owner = next(
        (p[:2], k)
        for k, p in enumerate(pieces)
        if len(p) >= 3 and p.isalpha() and full.index(p[:2]) == len(tok.decode(ids[:k], skip_special_tokens=False))
    )
    step = _run(tok, ids, [stop], chunk=chunk)
    assert step.finish is FinishReason.STOP and step.stop == stop and step.num_tokens == owner + 1
    assert step.text == full[: full.index(stop) + len(stop)]
    assert not tok.decode(ids[: owner + 1], skip_special_tokens=False).endswith(stop), "the token must go on"


def test_earliest_of_several_stops_wins_regardless_of_order(tok):
    ids = tok(TEXT)["input_ids"]
    stops = ["<end_of_code>", "<end_of_step>", "answer"]
    for order in (stops, stops[::-1]):
        step = _run(tok, ids, order, chunk=4)
        text, m = _expected_stop(tok, ids, "answer")
        assert (step.text, step.stop, step.num_tokens) == (text, "answer", m)
    step = _run(tok, ids, ["<end_of_code>", "<end_of_step>"], chunk=7)
    text, m = _expected_stop(tok, ids, "<end_of_step>")
    assert (step.text, step.stop, step.num_tokens) == (text, "<end_of_step>", m)
    assert step.text.endswith("answer<end_of_step>")


def test_eos_and_length(tok):
    ids = tok("x = 12 * 7")["input_ids"]
    step = _run(tok, ids + [EOS] + ids, ["<end_of_step>"], chunk=4)
    assert step.finish is FinishReason.EOS and step.stop is None
    assert step.text == tok.decode(ids, skip_special_tokens=False) and step.num_tokens == len(ids) + 1
    # the token limit cuts before a stop string that would come later in the same chunk
    more = tok("x = 12 * 7<end_of_code>")["input_ids"]
    step = _run(tok, more, ["<end_of_code>"], max_tokens=len(more) - 1, chunk=len(more))
    assert step.finish is FinishReason.LENGTH and step.stop is None and step.num_tokens == len(more) - 1
    assert step.text == tok.decode(more[:-1], skip_special_tokens=False)


def test_empty_stop_string_is_rejected(tok):
    with pytest.raises(ValueError, match="non-empty"):
        StopScanner(tok, ["<end_of_step>", ""], (EOS,), 10, context=[])
