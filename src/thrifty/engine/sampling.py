"""Per-sequence token choice: greedy at temperature 0, otherwise temperature + nucleus.

Sampling runs in numpy on the logits row llama.cpp hands back, one row per sequence, so
every sequence in a batch keeps its own temperature, top_p and seeded random stream. The
same seed draws the same random numbers whether or not speculative drafts were accepted,
because exactly one draw is spent per emitted token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Candidates looked at first for top_p; the full sort only runs when they hold too little mass.
_TOP_CANDIDATES = 1024


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    #: Prompt-lookup drafts for this request: None = the engine's setting.
    prompt_lookup: bool | None = None
    #: Keep the gap between the two best logits of every step (diagnostics and tests).
    record_margins: bool = False


class Sampler:
    def __init__(self, params: SamplingParams) -> None:
        self.temperature = params.temperature
        self.top_p = params.top_p
        self.rng = np.random.default_rng(params.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def sample(self, logits: np.ndarray) -> int:
        if self.greedy:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        if self.top_p < 1.0:
            ids, probs = self._nucleus(scaled)
        else:
            ids = None
            probs = np.exp(scaled - scaled.max())
            probs /= probs.sum()
        cdf = np.cumsum(probs)
        pick = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        pick = min(pick, len(probs) - 1)
        return int(ids[pick]) if ids is not None else pick

    @staticmethod
    def margin(logits: np.ndarray) -> float:
        """How far the best token leads the runner-up, in logits (small = a near-tie)."""
        top2 = np.partition(logits, -2)[-2:]
        return float(top2[1] - top2[0])

    def _nucleus(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The smallest set of most likely tokens whose probability reaches top_p."""
        top = scaled.max()
        total = np.exp(scaled - top).sum()
        k = min(_TOP_CANDIDATES, len(scaled))
        cand = np.argpartition(scaled, -k)[-k:]
        order = cand[np.argsort(scaled[cand])[::-1]]
        probs = np.exp(scaled[order] - top) / total
        cdf = np.cumsum(probs)
        if cdf[-1] < self.top_p and k < len(scaled):
            order = np.argsort(scaled)[::-1]
            probs = np.exp(scaled[order] - top) / total
            cdf = np.cumsum(probs)
        keep = int(np.searchsorted(cdf, self.top_p, side="left")) + 1
        kept = probs[:keep]
        return order[:keep], kept / kept.sum()
