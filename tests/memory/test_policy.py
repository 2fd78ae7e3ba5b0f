"""The scoring formulas, without Redis or models."""

from __future__ import annotations

import math
import random

import pytest

from mcp_gemma.memory.config import MemorySettings
from mcp_gemma.memory.policy import recall_score, recency, retention, retention_key, should_promote

DAY = 86_400.0


def test_recency_halves_every_half_life() -> None:
    assert recency(1000.0, 1000.0, DAY) == 1.0
    assert recency(0.0, DAY, DAY) == pytest.approx(0.5)
    assert recency(0.0, 2 * DAY, DAY) == pytest.approx(0.25)
    assert recency(10.0, 5.0, DAY) == 1.0  # clock skew never gives more than 1


def test_recall_score_is_the_product_and_explains_itself() -> None:
    s = recall_score(0.8, 0.5, 0.0, DAY, DAY)
    assert s.score == pytest.approx(0.8 * 0.5 * 0.5)
    assert "similarity 0.800" in s.why and "importance 0.50" in s.why and "recency 0.500" in s.why
    assert recall_score(-0.3, 1.0, 0.0, 0.0, DAY).score == 0.0


def test_retention_key_orders_like_retention_at_any_time() -> None:
    rng = random.Random(7)
    items = [(rng.uniform(0.01, 1), rng.randint(1, 20), rng.uniform(0, 5 * DAY)) for _ in range(300)]
    by_key = sorted(
        range(len(items)), key=lambda i: retention_key(items[i][0], items[i][1], items[i][2], DAY)
    )
    for now in (5 * DAY, 9 * DAY):
        values = [retention(imp, n, at, now, DAY) for imp, n, at in items]
        assert [values[i] for i in by_key] == sorted(values)
    assert retention_key(0.0, 5, 0.0, DAY) == -math.inf


def test_promotion_rule() -> None:
    assert should_promote("short_term", 0.1, 4, after_accesses=3, at_importance=0.8)
    assert not should_promote("short_term", 0.1, 3, after_accesses=3, at_importance=0.8)
    assert should_promote("short_term", 0.85, 1, after_accesses=3, at_importance=0.8)
    assert not should_promote("long_term", 1.0, 100, after_accesses=3, at_importance=0.8)


def test_tier_settings_merge_partial_overrides() -> None:
    s = MemorySettings.model_validate({"tiers": {"working": {"ttl_s": 2}}})
    assert s.tier("working").ttl_s == 2 and s.tier("working").capacity == 100
    assert s.tier("semantic").ttl_s is None
    with pytest.raises(ValueError, match="unknown memory tier"):
        MemorySettings.model_validate({"tiers": {"scratch": {"capacity": 1}}})
