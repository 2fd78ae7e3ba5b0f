"""``benches/quality/fit_fusion.py``'s fitting step (the fourth round's learned fusion): the pairwise
logistic ranker is shrunk toward today's hand rule and learns a feature that separates the pairs.
Synthetic pairs only; the fit on the real corpora is a benchmark (benches/README.md)."""

from __future__ import annotations

import numpy as np

from benches.quality.fit_fusion import FEATURES, newton, prior

COVER = list(FEATURES).index("cover")


def _pairs(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Differences (relevant - non-relevant) where only the coverage column is informative."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0.0, 0.1, size=(n, len(FEATURES)))
    d[:, COVER] = np.abs(rng.normal(0.2, 0.05, size=n))
    return d, np.full(n, 1.0 / n)


def test_a_large_penalty_gives_todays_rule_back() -> None:
    d, w = _pairs(1)
    theta = newton(d * 20.0, w, lam=1e6, mask=np.ones(len(FEATURES)))
    np.testing.assert_allclose(theta, prior(), atol=1e-4)
    assert prior()[list(FEATURES).index("cos")] == 1.0


def test_the_fit_weights_the_separating_feature() -> None:
    d, w = _pairs(2)
    theta = newton(d * 20.0, w, lam=0.01, mask=np.ones(len(FEATURES)))
    assert theta[COVER] > 1.0
    assert theta[COVER] > 2 * np.abs(np.delete(theta, COVER)).max()  # the noise columns shrink
    assert ((d @ theta) > 0).all()  # every pair ordered


def test_masked_features_stay_zero() -> None:
    d, w = _pairs(3)
    mask = np.asarray([1.0 if f in ("cos", "nb") else 0.0 for f in FEATURES])
    theta = newton(d * 20.0, w, lam=0.01, mask=mask)
    assert np.count_nonzero(theta[mask == 0]) == 0
