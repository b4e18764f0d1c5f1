"""The `route:` config section (and its `routes.<name>.route` overrides), validated once.

route:
  default: gpt-4o              # the route's model when nothing else decides or a pick is down
  apply_to: all                # all requests, or only aliases (auto, tier:NAME)
  tiers: {cheap: gpt-4o-mini, strong: gpt-4o}
  rules:
    - {when: {keywords: [translate]}, model: tier:cheap}
    - {when: {prompt_tokens_min: 6000}, model: tier:strong}
  router: router.pkl           # learned router artifact (thrifty router train)
  target: 0.95                 # quality target as a fraction of the best candidate's
  cascade: {tiers: [gpt-4o-mini, gpt-4o], scorer: scorer.pkl, accept: 0.6}
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class When(_Strict):
    """Conditions of a rule; all given ones must hold."""

    route: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    #: the model names or aliases the client asked for
    requested: list[str] = Field(default_factory=list)
    prompt_tokens_min: int | None = Field(default=None, ge=0)
    prompt_tokens_max: int | None = Field(default=None, ge=0)
    #: the client's max_tokens (max_completion_tokens) bounds; a request without one fails *_max
    max_tokens_min: int | None = Field(default=None, ge=0)
    max_tokens_max: int | None = Field(default=None, ge=0)
    #: a Python regular expression searched in the prompt (case-insensitive)
    regex: str | None = None
    #: any of these words or phrases in the prompt (case-insensitive, whole words)
    keywords: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class Rule(_Strict):
    name: str | None = None
    when: When = Field(default_factory=When)
    #: a configured model name or `tier:NAME`
    model: str = Field(min_length=1)


class VerifySettings(_Strict):
    """Checks a route supplies for its answers; an answer that fails one is not accepted."""

    #: the answer must end on a number
    numeric: bool = False
    #: a Python regular expression the answer must contain (searched, DOTALL)
    regex: str | None = None
    #: a JSON schema the answer (or its fenced JSON block) must validate against
    json_schema: dict[str, Any] | None = None
    #: Python asserts the answer's code must pass, run in the sandbox (thrifty.evals.sandbox)
    tests: str | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class JudgeTierSettings(_Strict):
    """A model that grades a cheap answer the scorer is unsure of, before the cascade escalates.

    Asked only for an answer that passed the route's verifiers and scored in
    [`min_score`, `accept`) (every such answer when the cascade has no scorer): a judge call
    costs far less than the strong model's answer, so it pays off where the scorer cannot
    tell. Its cost is side cost in the ledger. A failed, timed-out or unreadable judge never
    lets an answer through."""

    #: the grading model (any model of `models:`; a cheap strong-reasoning one, say)
    model: str = Field(min_length=1)
    #: what a good answer does
    rubric: str = "The answer is correct and complete, and answers exactly what was asked."
    scale: int = Field(default=10, ge=1)
    #: the judge's score at or above which the answer is served
    pass_score: float = Field(default=8, ge=0)
    #: below this scorer P(good), escalate without asking the judge
    min_score: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=20.0, gt=0)
    max_tokens: int = Field(default=256, ge=16)

    @model_validator(mode="after")
    def _pass_within_scale(self) -> JudgeTierSettings:
        if self.pass_score > self.scale:
            raise ValueError(f"judge: pass_score {self.pass_score:g} is above the scale ({self.scale})")
        return self


class CascadeSettings(_Strict):
    #: models from cheapest to strongest; the last one's answer is always accepted (with
    #: `signals`, the artifact's stages replace them)
    tiers: list[str] = Field(default_factory=list)
    #: scorer artifact (`thrifty router train --scorer`); without it only logprobs decide
    scorer: str | None = None
    #: cascade artifact (`thrifty router train --cascade`): stages of models called at once,
    #: scored on signals from their answers (agreement, verifiers, logprobs)
    signals: str | None = None
    #: answers asked of each model of a signals stage (more than one: extra samples, at
    #: `sample_temperature`; every one is paid for as side cost)
    samples: int = Field(default=1, ge=1, le=8)
    sample_temperature: float = Field(default=0.7, ge=0, le=2)
    #: accept an answer whose predicted P(good) is at least this (default: the signals
    #: artifact's calibrated threshold, else 0.5)
    accept: float | None = Field(default=None, ge=0, le=1)
    #: reject an answer whose mean token logprob is below this (when the provider returns them)
    min_mean_logprob: float | None = None
    verify: VerifySettings | None = None
    #: a judge tier for answers the scorer is unsure of (see JudgeTierSettings)
    judge: JudgeTierSettings | None = None
    #: a streaming request: `skip` the cascade (its last tier streams as usual), or `buffer`:
    #: run the cascade, then replay a served cheap answer as the stream the client asked for
    #: (the first token waits for the whole cheap answer; an escalation streams live)
    stream: Literal["skip", "buffer"] = "skip"

    @model_validator(mode="after")
    def _stages(self) -> CascadeSettings:
        if self.signals is None and len(self.tiers) < 2:
            raise ValueError("cascade: give at least two `tiers`, or a `signals` artifact")
        if self.signals is not None and self.scorer is not None:
            raise ValueError("cascade: give either `scorer` or `signals`, not both")
        if self.signals is not None and self.tiers:
            raise ValueError("cascade: the `signals` artifact names its stages; leave out `tiers`")
        return self


class RouteSettings(_Strict):
    enabled: bool = True
    default: str | None = None
    apply_to: Literal["all", "aliases"] = "all"
    tiers: dict[str, str] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    router: str | None = None
    #: restrict the learned router to these of its candidates
    candidates: list[str] | None = None
    policy: Literal["threshold", "utility", "margin"] | None = None
    #: the policy knob (threshold or lambda); overrides `target`
    knob: float | None = None
    #: quality target as a fraction of the best candidate's quality, looked up in the artifact's calibration
    target: float | None = Field(default=None, gt=0, le=1.5)
    cascade: CascadeSettings | None = None

    @model_validator(mode="after")
    def _one_picker(self) -> RouteSettings:
        if self.router and self.cascade:
            raise ValueError("route: give either `router` or `cascade`, not both")
        return self
