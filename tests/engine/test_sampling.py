import numpy as np

from thrifty.engine.sampling import Sampler, SamplingParams


def _logits(seed: int = 0, n: int = 5000) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n).astype(np.float32) * 3


def test_temperature_zero_is_argmax() -> None:
    logits = _logits()
    assert Sampler(SamplingParams(temperature=0)).sample(logits) == int(np.argmax(logits))


def test_same_seed_same_tokens() -> None:
    logits = _logits(1)
    a = Sampler(SamplingParams(temperature=1.0, seed=42))
    b = Sampler(SamplingParams(temperature=1.0, seed=42))
    assert [a.sample(logits) for _ in range(20)] == [b.sample(logits) for _ in range(20)]


def test_tiny_top_p_keeps_only_the_best_token() -> None:
    logits = _logits(2)
    s = Sampler(SamplingParams(temperature=1.0, top_p=1e-6, seed=1))
    assert {s.sample(logits) for _ in range(20)} == {int(np.argmax(logits))}


def test_top_p_samples_stay_in_the_nucleus() -> None:
    logits = _logits(3)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(probs)[::-1]
    keep = int(np.searchsorted(np.cumsum(probs[order]), 0.5)) + 1
    nucleus = set(order[:keep].tolist())
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.5, seed=3))
    assert {s.sample(logits) for _ in range(200)} <= nucleus
