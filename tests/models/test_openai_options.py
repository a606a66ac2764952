"""openai.retry: the one backoff shape, with the first spelling (backoff_s / max_backoff_s) still accepted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from corevad.backoff import BackoffPolicy
from corevad.models import OpenAIOptions
from corevad.schema import BackoffConfig


def test_retry_is_the_shared_backoff_shape_with_todays_defaults() -> None:
    opts = OpenAIOptions()
    assert isinstance(opts.retry, BackoffConfig)
    assert opts.retry.policy() == BackoffPolicy(initial_s=1.0, max_s=10.0, factor=2.0, jitter=0.0)


def test_the_first_spelling_fills_retry_and_an_explicit_retry_wins() -> None:
    old = OpenAIOptions.model_validate({"backoff_s": 0.05, "max_backoff_s": 0.5})
    assert (old.retry.initial_s, old.retry.max_s) == (0.05, 0.5)
    both = OpenAIOptions.model_validate({"backoff_s": 3, "retry": {"initial_s": 0.2, "factor": 3}})
    assert (both.retry.initial_s, both.retry.factor, both.retry.max_s) == (0.2, 3, 10.0)
    assert OpenAIOptions(retry={"initial_s": 0.01}).retry.initial_s == 0.01  # type: ignore[arg-type]


def test_a_bad_retry_names_its_field() -> None:
    with pytest.raises(ValidationError, match="retry.initial_s"):
        OpenAIOptions.model_validate({"backoff_s": -1})
    with pytest.raises(ValidationError, match="retry.jitter"):
        OpenAIOptions.model_validate({"retry": {"jitter": 2}})
