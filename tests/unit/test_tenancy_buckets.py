"""Token buckets, without sleeping: the past is simulated by moving ``updated`` back."""

from __future__ import annotations

import pytest

from taskpilot.tenancy.buckets import Buckets, TokenBucket


def elapse(bucket: TokenBucket, seconds: float) -> None:
    bucket.updated -= seconds


def test_a_new_bucket_is_full() -> None:
    bucket = TokenBucket(rate=10, burst=5)

    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]


def test_an_empty_bucket_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    bucket.try_take(5)

    assert bucket.wait_time() == pytest.approx(0.1, abs=0.01)
    assert bucket.wait_time(3) == pytest.approx(0.3, abs=0.01)


def test_a_bucket_with_tokens_needs_no_wait() -> None:
    assert TokenBucket(rate=10, burst=5).wait_time(5) == 0.0


def test_tokens_come_back_with_time() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    bucket.try_take(5)

    elapse(bucket, 0.3)

    assert bucket.try_take(2) is True
    assert bucket.try_take(2) is False
    assert bucket.tokens == pytest.approx(1.0, abs=0.01)


def test_tokens_never_exceed_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5)

    elapse(bucket, 3600)

    assert bucket.try_take(5) is True
    assert bucket.try_take() is False


def test_a_failed_take_takes_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=3)

    assert bucket.try_take(4) is False
    assert bucket.tokens == pytest.approx(3.0, abs=0.01)


async def test_take_returns_at_once_when_tokens_are_available() -> None:
    bucket = TokenBucket(rate=1, burst=2)

    await bucket.take(2)

    assert bucket.tokens == pytest.approx(0.0, abs=0.01)


def test_each_key_has_its_own_bucket() -> None:
    buckets = Buckets(rate=2)

    assert buckets["pn-1"].try_take(2) is True
    assert buckets["pn-1"].try_take() is False
    assert buckets["pn-2"].try_take(2) is True
    assert buckets["pn-1"] is buckets["pn-1"]


def test_the_burst_defaults_to_the_rate() -> None:
    assert Buckets(rate=80)["pn-1"].burst == 80
    assert Buckets(rate=80, burst=10)["pn-1"].burst == 10


def test_a_slow_rate_still_lets_one_message_through_eventually() -> None:
    bucket = Buckets(rate=0.5)["pn-1"]
    bucket.try_take(bucket.tokens)

    elapse(bucket, 3600)

    assert bucket.try_take() is True
