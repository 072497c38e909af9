"""Length maps of the GASF input: exact inverses, padding gap, quantile intervals by frequency."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.representations.length_maps import compand, expand, quantile_decode, quantile_encode

TABLE, COUNTS, SCALE = np.array([24, 44, 1440, 37440]), np.array([30, 50, 19, 1]), 37440.0


@pytest.mark.parametrize("fwd,inv", [(compand, expand),
                                     (lambda x, s: quantile_encode(x, s, TABLE, COUNTS),
                                      lambda v, s: quantile_decode(v, s, TABLE, COUNTS))])
def test_exact_inverse_padding_and_gap(fwd, inv):
    x = np.array([[24, -44, 1440, -37440, 0, 0]]) / SCALE
    v = fwd(x, SCALE)
    np.testing.assert_array_equal(v[0, 4:], 0.0)  # padding stays 0
    assert np.all(np.abs(v[0, :4]) >= 0.5) and np.all(np.sign(v[0, :4]) == np.sign(x[0, :4]))
    np.testing.assert_allclose(inv(v, SCALE) * SCALE, x * SCALE, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(inv(np.full((1, 2), 0.2), SCALE), 0.0)  # below 0.25: padding


def test_quantile_intervals_follow_the_training_frequencies():
    v = quantile_encode(np.array([24, 44, 1440, 37440]) / SCALE, SCALE, TABLE, COUNTS)
    # mid-rank CDF: 0.15, 0.55, 0.895, 0.995 -> v = (1 + F) / 2
    np.testing.assert_allclose(v, [0.575, 0.775, 0.9475, 0.9975])
    # 44 bytes owns F in (0.30, 0.80]: an error of +-0.1 in v keeps it; 37440 (1 packet in 100) does not
    np.testing.assert_allclose(quantile_decode(v[1:2] + [0.1], SCALE, TABLE, COUNTS) * SCALE, [44])
    np.testing.assert_allclose(quantile_decode(v[1:2] - [0.1], SCALE, TABLE, COUNTS) * SCALE, [44])
    np.testing.assert_allclose(quantile_decode(v[3:4] - [0.01], SCALE, TABLE, COUNTS) * SCALE, [1440])
    # an unseen length is placed between its neighbours and decodes to one of them
    u = quantile_encode(np.array([100.0]) / SCALE, SCALE, TABLE, COUNTS)
    assert v[1] < u[0] < v[2]
    assert quantile_decode(u, SCALE, TABLE, COUNTS)[0] * SCALE in (44, 1440)


def test_position_weights_back_off_to_the_class_counts():
    from trafficgen.representations.length_maps import position_weights

    w = position_weights([[3, 0, 1], [0, 0, 0]], [4, 2, 2], backoff=0.5)
    # position 0: its counts + 0.5 * 4 packets * (0.5, 0.25, 0.25); position 1 (no packet): 0.5 * 1 * the same
    np.testing.assert_allclose(w, [[4.0, 0.5, 1.5], [0.25, 0.125, 0.125]])
    with pytest.raises(ValueError, match="position counts"):
        position_weights([[1, 2]], [1, 0])


def test_count_position_weights_back_off_to_the_position_weights():
    from trafficgen.representations.length_maps import count_bucket, count_position_weights

    np.testing.assert_array_equal(count_bucket([1, 2, 3, 5, 6, 32]), [0, 1, 2, 2, 3, 3])
    position_w = np.array([[3.0, 1.0], [1.0, 1.0]])  # (W=2, K=2)
    counts = np.array([[[2, 0], [0, 0]], [[0, 0], [1, 1]]])  # (B=2, W, K)
    w = count_position_weights(counts, position_w, backoff=0.5)
    # bucket 0 position 0: (2, 0) + 0.5 * 2 * (0.75, 0.25); position 1 (no packet): 0.5 * 1 * (0.5, 0.5)
    np.testing.assert_allclose(w, [[[2.75, 0.25], [0.25, 0.25]], [[0.375, 0.125], [1.5, 1.5]]])
    with pytest.raises(ValueError, match="count-position"):
        count_position_weights(counts[0], position_w)


def test_sparse_counts_round_trip_and_reject_bad_rows():
    from trafficgen.representations.length_tables import dense_counts, sparse_counts

    counts = np.zeros((2, 3, 4), dtype=np.int64)
    counts[0, 1, 2], counts[1, 2, 0] = 5, 1
    rows = sparse_counts(counts)
    assert rows == [[0, 1, 2, 5], [1, 2, 0, 1]]
    np.testing.assert_array_equal(dense_counts(rows, counts.shape), counts)
    assert dense_counts([], (3, 4)).sum() == 0
    assert dense_counts([[0, 3, 2, 5]], counts.shape) is None  # position outside the shape
    assert dense_counts([[0, 1, 2, 0]], counts.shape) is None  # a count of 0
    assert dense_counts([[0, 1, 5]], counts.shape) is None  # wrong row length
