"""Thinning in ``edge_image_stats`` (issue 21): the thresholded prediction is thinned as
MATLAB's ``bwmorph(BW, 'thin', Inf)``, which SEISM applies, before its pixels are matched.

The oracles do not use scikit-image:

- 3-pixel-wide bars count as their hand-drawn 1-pixel centre lines (``thin=False``), and with
  ``thin=False`` the bars count every pixel (hand-counted tables);
- a 4 x 5 rectangle thins to the 2 pixels derived by hand below from the published algorithm;
- ``reference_thin``: that algorithm written out from its published conditions, checked on
  the hand cases, then on diagonal bands, a 3-pixel-thick rectangle outline, a plus, an L and
  random blobs.

All images are small enough that the matching radius (``max_dist`` x diagonal) is below one
pixel: a predicted pixel matches a label pixel at the same position only, so the counts are
set intersections and a label equal to a literal map pins the thinned map down exactly
(cntP = sumP = |literal| iff thinned == literal).
"""
import numpy as np
import pytest

from mmpoly.evaluation.metrics.functional import edge_image_stats

#: each keeps a different set of the bars below (p = 0.9, 0.5, 0.3)
THRESHOLDS = (0.2, 0.4, 0.6, 0.95)


def reference_thin(image):
    """``bwmorph(image, 'thin', Inf)`` from MATLAB's documented algorithm (Lam, Lee & Suen,
    "Thinning methodologies - a comprehensive survey", IEEE TPAMI 14(9), 1992, p. 879; the
    two-subiteration algorithm of Guo & Hall 1989): x1..x8 are the 8 neighbours of p from
    the east neighbour counter-clockwise (E, NE, N, NW, W, SW, S, SE), outside the image 0.

    G1: X_H(p) = 1, X_H = #{i = 1..4: x_{2i-1} = 0 and (x_{2i} = 1 or x_{2i+1} = 1)}, x9 = x1
    G2: 2 <= min(n1, n2) <= 3, n1 = sum_k (x_{2k-1} or x_{2k}), n2 = sum_k (x_{2k} or x_{2k+1})
    G3: (x2 or x3 or not x8) and x1 = 0        (first subiteration)
    G3': (x6 or x7 or not x4) and x5 = 0       (second subiteration)

    Each subiteration deletes, all at once, the pixels meeting G1, G2 and its G3 on the image
    as the subiteration found it; the two are repeated until an iteration deletes nothing.
    """
    img = np.pad(np.asarray(image, dtype=bool), 1)
    while True:
        deleted = 0
        for sub in (1, 2):
            delete = []
            for y, x in zip(*np.nonzero(img)):
                n = [bool(img[y + dy, x + dx]) for dy, dx in
                     ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))]
                x1, x2, x3, x4, x5, x6, x7, x8 = n
                xh = sum(not n[2 * i] and (n[2 * i + 1] or n[(2 * i + 2) % 8])
                         for i in range(4))
                n1 = sum(n[2 * k] or n[2 * k + 1] for k in range(4))
                n2 = sum(n[2 * k + 1] or n[(2 * k + 2) % 8] for k in range(4))
                g3 = not ((x2 or x3 or not x8) and x1) if sub == 1 else \
                    not ((x6 or x7 or not x4) and x5)
                if xh == 1 and 2 <= min(n1, n2) <= 3 and g3:
                    delete.append((y, x))
            for y, x in delete:
                img[y, x] = False
            deleted += len(delete)
        if not deleted:
            return img[1:-1, 1:-1]


def band(centre):
    """The 3-pixel-wide band around a 1-pixel line: every pixel within one step (8-way)."""
    c = np.pad(np.asarray(centre, dtype=bool), 1)
    out = np.zeros_like(c)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(c, dy, 0), dx, 1)
    return out[1:-1, 1:-1]


def stats(pred, gt, thin):
    s = edge_image_stats(pred, gt, THRESHOLDS, thin=thin)
    assert (s[0] == s[2]).all()  # one-to-one: as many matched label as predicted pixels
    return s


def bars():
    """Three separate bars on 40 x 40 (radius 0.0075 x 56.6 = 0.42 px) and their centre lines:
    horizontal at p = 0.9, vertical at 0.5, horizontal at 0.3 (0.2 keeps all three, 0.4
    the first two, 0.6 the first, 0.95 none). The label: the first bar's whole centre row, the
    second bar's left column (beside its centre line), the third bar's centre line."""
    h, v, h2 = (np.zeros((40, 40), bool) for _ in range(3))
    h[6, 6:26] = True  # 20 px: the centre line ...
    v[6:26, 33] = True  # 20 px
    h2[30, 5:15] = True  # 10 px
    prob_centre = 0.9 * h + 0.5 * v + 0.3 * h2
    prob_band = 0.9 * band(h) + 0.5 * band(v) + 0.3 * band(h2)
    # ... of the bands rows 5-7 x cols 5-26, rows 5-26 x cols 32-34, rows 29-31 x cols 4-15
    assert (band(h) == np.pad(np.ones((3, 22), bool), ((5, 32), (5, 13)))).all()
    assert band(v)[5:27, 32:35].all() and band(v).sum() == 66 and band(h2).sum() == 36
    gt = np.zeros((40, 40), np.uint8)
    gt[6, 5:27] = 1  # 22 px, the thinned bar's 20 and its two end pixels
    gt[5:27, 32] = 1  # 22 px, one pixel off the thinned bar's centre line
    gt[h2] = 1  # 10 px
    return prob_band, prob_centre, gt


def test_three_pixel_bands_count_as_their_centre_lines():
    """(a) A 3-pixel-wide bar thins to its centre line without its two end pixels: the counts
    of the bars equal those of the hand-drawn centre lines, not thinned, at every
    threshold. Hand table (cntR = cntP, sumR = 54): 20 + 0 + 10 of 50 predicted at 0.2,
    20 of 40 at 0.4, 20 of 20 at 0.6, none at 0.95."""
    prob_band, prob_centre, gt = bars()
    expected = np.array([[30, 20, 20, 0], [54] * 4, [30, 20, 20, 0], [50, 40, 20, 0]])
    np.testing.assert_array_equal(stats(prob_centre, gt, thin=False), expected)
    np.testing.assert_array_equal(stats(prob_band, gt, thin=True), expected)
    np.testing.assert_array_equal(stats(prob_centre, gt, thin=True), expected)  # stays
    # the two subiterations delete on opposite sides: the transposed picture as well
    np.testing.assert_array_equal(stats(prob_band.T, gt.T, thin=True), expected)


def test_without_thinning_the_bands_count_every_pixel():
    """(c) ``thin=False``: every pixel of the bars is predicted (66 + 66 + 36) and each label
    pixel inside them matches (22 + 22 + 10): the counts of (a) come from thinning."""
    prob_band, _, gt = bars()
    expected = np.array([[54, 44, 22, 0], [54] * 4, [54, 44, 22, 0], [168, 132, 66, 0]])
    np.testing.assert_array_equal(stats(prob_band, gt, thin=False), expected)
    assert (stats(prob_band, gt, thin=True) != expected).any()


#: a 4 x 5 rectangle (rows 1-4, columns 1-5 of 6 x 7)
RECT = np.pad(np.ones((4, 5), bool), ((1, 1), (1, 1)))

#: ``bwmorph(RECT, 'thin', Inf)`` derived by hand (``test_rectangle_thins_as_derived_by_hand``)
RECT_THIN = np.array([[0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 1, 1, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0]], dtype=bool)


def test_rectangle_thins_as_derived_by_hand():
    """(b) ``RECT_THIN`` by hand, neighbours written (x1..x8) = (E, NE, N, NW, W, SW, S, SE).

    Any pixel with all 8 neighbours set has n1 = n2 = 4: G2 fails, it stays. The border
    pixels of a filled rectangle of at least 2 x 2, in every subiteration (G1 and G2 hold):

    ======================  ===================  ====  =====  =========  ==========
    pixel                   x1..x8               X_H   n1,n2  G3 (1st)   G3' (2nd)
    ======================  ===================  ====  =====  =========  ==========
    top edge                1 0 0 0 1 1 1 1      1     3, 3   delete     keep
    bottom edge             1 1 1 1 1 0 0 0      1     3, 3   keep       delete
    left edge               1 1 1 0 0 0 1 1      1     3, 3   keep       delete
    right edge              0 0 1 1 1 1 1 0      1     3, 3   delete     keep
    top-left corner         1 0 0 0 0 0 1 1      1     2, 2   delete     delete
    top-right corner        0 0 0 0 1 1 1 0      1     2, 2   delete     keep
    bottom-left corner      1 1 1 0 0 0 0 0      1     2, 2   keep       delete
    bottom-right corner     0 0 1 1 1 0 0 0      1     2, 2   delete     delete
    ======================  ===================  ====  =====  =========  ==========

    (e.g. top edge: G3 = (x2 or x3 or not x8) and x1 = (0 or 0 or 0) and 1 = 0: delete;
    G3' = (x6 or x7 or not x4) and x5 = (1 or 1 or 1) and 1 = 1: keep.)

    Iteration 1. Subiteration 1 on rows 1-4 x columns 1-5 deletes row 1 and column 5
    (top edge, right edge, both top corners, bottom-right corner): rows 2-4 x columns 1-4
    are left. Subiteration 2 deletes row 4 and column 1 of these (bottom edge, left edge,
    top-left, bottom-left and bottom-right corners): rows 2-3 x columns 2-4 are left.
    Iteration 2. Subiteration 1 on that 2 x 3 block deletes its top row and its right
    column: (3, 2) and (3, 3) are left. Subiteration 2: (3, 2) has only x1 = 1 and (3, 3)
    only x5 = 1, so n1 = 1 < 2 (G2 fails): both stay. Iteration 3 deletes nothing: done.

    The same table thins a bar of rows r-1..r+1 x columns a..b (test (a)): subiteration 1
    deletes row r-1 and column b, subiteration 2 then row r+1 and (r, a); row r, columns
    a+1..b-1 is left, where the inner pixels have X_H = 2 (G1 fails) and the two ends
    n1 = 1 (G2 fails): the centre line without its two end pixels.
    """
    np.testing.assert_array_equal(reference_thin(RECT), RECT_THIN)  # the oracle agrees
    s = edge_image_stats(0.7 * RECT, RECT_THIN.astype(np.uint8), THRESHOLDS, thin=True)
    # t <= 0.7 (0.2, 0.4, 0.6): the thinned map is RECT_THIN (2 predicted pixels on its 2)
    np.testing.assert_array_equal(s, [[2, 2, 2, 0], [2] * 4, [2, 2, 2, 0], [2, 2, 2, 0]])
    # not thinned: 20 predicted pixels
    s = edge_image_stats(0.7 * RECT, RECT_THIN.astype(np.uint8), THRESHOLDS, thin=False)
    np.testing.assert_array_equal(s[3], [20, 20, 20, 0])


def test_reference_thin_on_the_hand_bars():
    """The written-out algorithm gives the centre lines of (a) too (checks the oracle)."""
    h = np.zeros((12, 30), bool)
    h[6, 6:26] = True
    np.testing.assert_array_equal(reference_thin(band(h)), h)
    np.testing.assert_array_equal(reference_thin(band(h.T)), h.T)
    np.testing.assert_array_equal(reference_thin(RECT_THIN), RECT_THIN)  # 1 px: unchanged


def shapes():
    """Shapes whose thinning needs several iterations or has corners and ends, where the
    result is no plain centre line (derived by ``reference_thin``, not by hand)."""
    out = {}
    d = np.zeros((24, 24), bool)
    d[np.arange(4, 20), np.arange(4, 20)] = True
    out['diagonal band'] = band(d)
    out['anti-diagonal band'] = band(d[:, ::-1])
    ring = np.zeros((24, 26), bool)
    ring[3:20, 2:23] = True
    ring[6:17, 5:20] = False  # a rectangle outline 3 px thick
    out['rectangle outline'] = ring
    plus = np.zeros((13, 13), bool)
    plus[5:8, 1:12] = plus[1:12, 5:8] = True
    out['plus'] = plus
    ell = np.zeros((14, 14), bool)
    ell[1:13, 1:5] = ell[9:13, 1:13] = True
    out['L'] = ell
    out['filled square'] = np.pad(np.ones((9, 9), bool), 2)
    rng = np.random.default_rng(0)
    for i in range(3):  # blobs: smoothed noise above a level
        noise = rng.random((26, 26))
        smooth = sum(np.roll(np.roll(noise, a, 0), b, 1) for a in (-1, 0, 1) for b in (-1, 0, 1))
        blob = np.zeros((26, 26), bool)
        blob[2:-2, 2:-2] = smooth[2:-2, 2:-2] > 4.6
        out[f'blob {i}'] = blob
    return out


@pytest.mark.parametrize('name', list(shapes()))
def test_thinning_equals_the_written_out_algorithm(name):
    """(b) On shapes with diagonal strokes, corners, branches, blobs: the counts against a
    label equal to ``reference_thin``'s map are (|map|, |map|) at every threshold that keeps
    the shape (the thinned map is that map exactly), and against another label they equal
    the counts of that map not thinned."""
    shape = shapes()[name]
    expected = reference_thin(shape)
    k = int(expected.sum())
    assert 0 < k < shape.sum()
    s = edge_image_stats(0.5 * shape, expected.astype(np.uint8), THRESHOLDS, thin=True)
    np.testing.assert_array_equal(s, [[k, k, 0, 0], [k] * 4, [k, k, 0, 0], [k, k, 0, 0]])
    other = np.roll(shape, 1, axis=1).astype(np.uint8)  # the shape one pixel to the right
    np.testing.assert_array_equal(
        edge_image_stats(0.5 * shape, other, THRESHOLDS, thin=True),
        edge_image_stats(0.5 * expected, other, THRESHOLDS, thin=False))
