"""The profile stage's ranking: ``top_k``'s total order, and the batch's lists for many people at once being the
lists the origin computes for one person on a miss."""

from __future__ import annotations

import numpy as np

from personalizer_adapters.batch.model import top_k


def test_top_k_breaks_ties_at_the_kth_score_by_index() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):  # few distinct scores: ties at the k-th best are the rule here, not the exception
        n, k = int(rng.integers(1, 80)), int(rng.integers(1, 12))
        scores = rng.integers(-2, 4, n).astype(np.float64)
        exclude = rng.random(n) < 0.2
        kept = np.where(exclude, -np.inf, scores)
        want = [i for i in sorted(range(n), key=lambda i: (-kept[i], i)) if kept[i] > 0][:k]
        assert top_k(scores, k, exclude).tolist() == want
    many = np.ones(5000)  # 5,000 equal scores: the first k indices, whatever the partition picked
    assert top_k(many, 3).tolist() == [0, 1, 2]
