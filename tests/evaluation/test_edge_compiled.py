"""The compiled edge counts (``mmpoly.evaluation.metrics.edges``, numba) against the
implementation they replaced, which stays as ``impl='reference'``: scikit-image's ``thin``
and a maximum flow in scipy.

- the thinning tables equal scikit-image's, and ``thin`` gives scikit-image's map exactly on
  random maps of every density and shape (1-pixel strips, borders, empty, all ones) and on
  thresholded smooth maps (thick blobs that need many iterations);
- ``EdgeMatcher`` gives the maximum flow's count on random maps and radii (0 to 9 px, at
  and around integer and sqrt(2) distances), and against an empty side;
- ``edge_image_stats`` gives the reference's (4, T) counts exactly, threshold by threshold:
  synthetic network-like maps at both tolerances, thin on and off, ignore regions, uint8
  inputs with values on the thresholds, constant maps, and NYUD_MT-format labels (the
  synthetic dataset's surface boundaries) with predictions derived from them.
"""
import numpy as np
import pytest

from mmpoly.benchmark.edges import synthetic_edge_pair
from mmpoly.evaluation.metrics import edges
from mmpoly.evaluation.metrics.functional import (DEFAULT_EDGE_THRESHOLDS, EdgeMatcher,
                                                  edge_image_stats, match_edge_pixels)


def test_thin_tables_are_scikit_images():
    from skimage.morphology._skeletonize import G123_LUT, G123P_LUT
    np.testing.assert_array_equal(edges.THIN_LUT_FIRST, G123_LUT)
    np.testing.assert_array_equal(edges.THIN_LUT_SECOND, G123P_LUT)
    assert 0 < edges.THIN_LUT_FIRST.sum() < 256 and \
        (edges.THIN_LUT_FIRST != edges.THIN_LUT_SECOND).any()


def random_maps(rng, count):
    for _ in range(count):
        h, w = rng.integers(1, 48, size=2)
        yield rng.random((h, w)) < rng.random()


def smooth_maps(rng, count, shape=(64, 80)):
    """Thresholded smoothed noise: thick blobs with holes, touching the border."""
    from scipy.ndimage import gaussian_filter
    for _ in range(count):
        field = gaussian_filter(rng.random(shape), sigma=rng.uniform(1, 6))
        for q in (0.2, 0.5, 0.8):
            yield field > np.quantile(field, q)


def test_thin_equals_scikit_image():
    from skimage.morphology import thin as skimage_thin
    rng = np.random.default_rng(0)
    special = [np.zeros((5, 7), bool), np.ones((5, 7), bool), np.ones((1, 9), bool),
               np.ones((9, 1), bool), np.ones((1, 1), bool), np.ones((60, 90), bool),
               np.indices((20, 21)).sum(0) % 2 == 0,
               np.eye(15, dtype=bool) | np.eye(15, k=1, dtype=bool)]
    thinned_any = 0
    for image in [*special, *random_maps(rng, 150), *smooth_maps(rng, 8)]:
        expected = skimage_thin(image)
        np.testing.assert_array_equal(edges.thin(image), expected)
        np.testing.assert_array_equal(edges.thin(image, impl='reference'), expected)
        thinned_any += int((expected != image).any())
    assert thinned_any > 100  # the maps did need thinning


def test_matcher_equals_the_maximum_flow():
    rng = np.random.default_rng(1)
    radii = (0.0, 0.5, 1.0, 1.4142, 1.4143, 2.0, 2.5, 3.0, 4.2, 6.0, 8.8)
    for i, pred in enumerate(random_maps(rng, 180)):
        gt = rng.random(pred.shape) < rng.random() ** 2  # often sparse, as labels are
        radius = radii[i % len(radii)]
        expected = edges.MaxFlowEdgeMatcher(gt, radius).match(pred)
        assert EdgeMatcher(gt, radius).match(pred) == expected, (i, radius)
        assert match_edge_pixels(pred, gt, radius) == expected
    # dense on both sides: the searches from single free pixels stop at their budget and
    # Hopcroft-Karp finishes (at once with budget 0, half way with 1)
    for i in range(12):
        pred = rng.random((40, 50)) < 0.3
        gt = rng.random((40, 50)) < 0.3
        radius = (1.5, 3.0, 5.0)[i % 3]
        expected = edges.MaxFlowEdgeMatcher(gt, radius).match(pred)
        for budget in (0, 1, 16, 10 ** 9):
            matcher = EdgeMatcher(gt, radius)
            matcher.search_budget = budget
            assert matcher.match(pred) == expected, (i, radius, budget)
    full, empty = np.ones((9, 11), bool), np.zeros((9, 11), bool)
    assert EdgeMatcher(empty, 3.0).match(full) == EdgeMatcher(full, 3.0).match(empty) == 0
    assert EdgeMatcher(full, 3.0).match(full) == 99
    # a label pixel reachable by many predicted pixels matches one of them
    one = empty.copy()
    one[4, 5] = True
    assert EdgeMatcher(one, 3.0).match(full) == EdgeMatcher(full, 3.0).match(one) == 1


def assert_same_counts(pred, gt, **kwargs):
    fast = edge_image_stats(pred, gt, **kwargs)
    slow = edge_image_stats(pred, gt, impl='reference', **kwargs)
    if slow is None:
        assert fast is None
        return None
    np.testing.assert_array_equal(fast, slow)
    return fast


@pytest.mark.parametrize('max_dist', [0.0075, 0.011])
def test_image_stats_equal_the_reference_on_network_like_maps(max_dist):
    """Every one of the 99 thresholds, two synthetic pairs (noise everywhere, peaks on the
    label's lines, so thinning and matching both do real work)."""
    matched_levels = 0
    for seed in range(2):
        prob, label = synthetic_edge_pair(96, 128, seed=seed, lines=12)
        s = assert_same_counts(prob, label, max_dist=max_dist)
        assert s.shape == (4, len(DEFAULT_EDGE_THRESHOLDS))
        matched_levels += int(((s[0] > 0) & (s[0] < s[3])).sum())
    assert matched_levels > 50  # partial matches at many thresholds: a real test


def test_image_stats_equal_the_reference_on_edge_cases():
    rng = np.random.default_rng(2)
    prob, label = synthetic_edge_pair(60, 72, seed=5, lines=8)
    # ignore regions: a block and a stripe along the border
    ignored = label.copy()
    ignored[10:30, 20:50] = 255
    ignored[:, :3] = 255
    assert_same_counts(prob, ignored, max_dist=0.02)
    assert_same_counts(prob, label, max_dist=0.02, thin=False)
    # uint8 input with every value on or beside a threshold (ties: q / 255 >= t)
    q = rng.choice(np.arange(0, 256, 1, dtype=np.uint8), size=label.shape)
    assert_same_counts(q, label, max_dist=0.03)
    assert_same_counts(np.round(prob * 20) / 20, label, max_dist=0.03)  # few distinct levels
    # constant maps, an empty label, a label without edges, all ignored
    for const in (0.0, 0.5, 1.0):
        assert_same_counts(np.full(label.shape, const, np.float32), label, max_dist=0.03)
    assert_same_counts(prob, np.zeros_like(label))
    assert_same_counts(prob, np.ones_like(label), max_dist=0.01)
    assert edge_image_stats(prob, np.full_like(label, 255)) is None
    # thresholds other than the default, a (1, H, W) input
    assert_same_counts(prob[None], label, thresholds=(0.0, 0.3, 0.31, 1.0, 1.5))


def test_image_stats_equal_the_reference_on_nyud_format_labels(tmp_path):
    """NYUD_MT's edge files (surface boundaries of the synthetic rooms, written as the
    dataset's ``edge/<id>.npy``), with predictions as a network gives them: blurred
    boundaries, noise, and a PNG's uint8 (``floor(255 p)``)."""
    from scipy.ndimage import gaussian_filter
    from mmpoly.datasets import make_synthetic_nyud_mt
    root = tmp_path / 'NYUD_MT'
    make_synthetic_nyud_mt(str(root), num_train=0, num_val=2, image_size=(72, 96), seed=3)
    files = sorted((root / 'edge').glob('*.npy'))
    assert files
    rng = np.random.default_rng(3)
    for path in files:
        label = np.load(path).astype(np.uint8)
        assert set(np.unique(label)) <= {0, 1} and label.sum() > 20
        shifted = np.roll(label, rng.integers(-2, 3), axis=rng.integers(0, 2))
        prob = np.clip(gaussian_filter(shifted.astype(float), 1.5) * 4
                       + rng.uniform(0, 0.4, label.shape), 0, 1)
        assert_same_counts(prob.astype(np.float32), label, max_dist=0.011)
        png = np.floor(prob * 255).astype(np.uint8)
        assert_same_counts(png, label, max_dist=0.011)


def test_impl_is_checked():
    with pytest.raises(ValueError, match='impl'):
        edge_image_stats(np.zeros((4, 4)), np.zeros((4, 4), np.uint8), impl='fast')
