"""Fixtures shared with the eval tests: a mock OpenAI whose models answer sums right or wrong."""

from tests.evals.conftest import mock_openai

__all__ = ["mock_openai"]
