"""Edge-map thinning and pixel matching for the edge ODS / OIS counts
(:func:`mmpoly.evaluation.metrics.functional.edge_image_stats`).

Two implementations that give the same maps and counts:

- ``'compiled'`` (default): numba kernels (``_edge_kernels``): scikit-image's ``thin``
  written as a worklist over the pixels that can change, and a maximum matching of label
  and predicted pixels within the tolerance (a greedy start, then augmenting paths);
- ``'reference'``: scikit-image's ``thin`` and a maximum flow in scipy, the implementation
  the compiled one replaced (about 30 times slower), kept as the tests' oracle.
"""
import math
from typing import Sequence

import numpy as np


def edge_disk_offsets(radius: float) -> np.ndarray:
    """(K, 2) integer pixel offsets (dy, dx) with dy^2 + dx^2 <= radius^2 (as BSDS'
    ``match.cc``: a pair at exactly the tolerance matches)."""
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = dy * dy + dx * dx <= radius * radius
    return np.stack([dy[inside], dx[inside]], axis=1)


def _thin_luts():
    """The two deletion tables of Guo & Hall's two-subiteration thinning (MATLAB's
    ``bwmorph(.., 'thin')``), indexed by the neighbour code of scikit-image's ``thin``:
    bit 0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE (the tests compare them with
    scikit-image's tables)."""
    first, second = np.zeros(256, np.uint8), np.zeros(256, np.uint8)
    for code in range(256):
        x = [bool(code >> i & 1) for i in range(8)]
        crossings = sum(not x[i] and (x[i + 1] or x[(i + 2) % 8]) for i in (0, 2, 4, 6))
        n1 = sum(x[k] or x[k - 1] for k in (1, 3, 5, 7))
        n2 = sum(x[k] or x[(k + 1) % 8] for k in (1, 3, 5, 7))
        g12 = crossings == 1 and 2 <= min(n1, n2) <= 3
        first[code] = g12 and not ((x[1] or x[2] or not x[7]) and x[0])
        second[code] = g12 and not ((x[5] or x[6] or not x[3]) and x[4])
    return first, second


THIN_LUT_FIRST, THIN_LUT_SECOND = _thin_luts()


def _check_impl(impl: str) -> None:
    if impl not in ('compiled', 'reference'):
        raise ValueError(f"impl must be 'compiled' or 'reference', not {impl!r}")


def thin(image, impl: str = 'compiled') -> np.ndarray:
    """``skimage.morphology.thin(image)`` (bool (H, W)): the same map, compiled."""
    _check_impl(impl)
    image = np.asarray(image).astype(bool)
    if impl == 'reference':
        from skimage.morphology import thin as skimage_thin
        return skimage_thin(image)
    from . import _edge_kernels
    h, w = image.shape
    img = np.zeros((h + 2) * (w + 2), np.uint8)
    _edge_kernels.threshold_and_thin(image.view(np.uint8), 1, THIN_LUT_FIRST, THIN_LUT_SECOND,
                                     True, img)
    return img.reshape(h + 2, w + 2)[1:-1, 1:-1].astype(bool)


def match_edge_pixels(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """Number of one-to-one matches between the edge pixels of two binary maps that lie at
    most ``radius`` pixels apart: a maximum-cardinality bipartite matching.

    This is what BSDS' ``correspondPixels`` optimises (its cost of an unmatched pixel,
    100 x the tolerance, exceeds every match distance, so its minimum-cost assignment
    matches as many pixels as possible; the distances only choose among equally large
    matchings, which does not change the counts). ``correspondPixels`` itself solves it on
    a sparse random outlier graph seeded from the clock and can come out a pixel short,
    differently from run to run (pyEdgeEval 0.2.8, its Python port, does: 7 of 8 pixels of
    a line matched to itself, once in 99 calls); this matching is exact and deterministic.
    """
    return EdgeMatcher(gt, radius).match(pred)


class EdgeMatcher:
    """:func:`match_edge_pixels` against one label map, for many predictions (the
    thresholds of one image): the label's pixels, the disk and the scratch grids are set up
    once. ``search_budget``: how much of the augmenting-path search runs one free label
    pixel at a time before Hopcroft-Karp takes over (in disk rows per label pixel; the
    count is the same either way, the tests run both)."""

    search_budget = 16

    def __init__(self, gt: np.ndarray, radius: float):
        from . import _edge_kernels
        self._count_matches = _edge_kernels.count_matches
        gt = np.asarray(gt).astype(bool)
        self.shape = h, w = gt.shape
        offsets = edge_disk_offsets(radius)
        r = int(math.ceil(radius)) if len(offsets) else 0
        # the disk row by row: dx^2 <= radius^2 - dy^2 is a run -hw..hw (-1: no pixel)
        self.half_widths = np.full(2 * r + 1, -1, np.int64)
        for dy, dx in offsets:
            self.half_widths[dy + r] = max(self.half_widths[dy + r], dx)
        self.gt_yx = np.ascontiguousarray(np.argwhere(gt), dtype=np.int64)
        self.pred_id = np.empty((h + 2 * r, w + 2 * r), np.int32)
        self.next_col = np.full((h + 2 * r, w + 2 * r + 1), w + 2 * r, np.int32)

    def match(self, pred: np.ndarray) -> int:
        pred = np.asarray(pred).astype(bool)
        if pred.shape != self.shape:
            raise ValueError(f'prediction {pred.shape} and label {self.shape} differ in shape')
        padded = np.zeros((self.shape[0] + 2, self.shape[1] + 2), np.uint8)
        padded[1:-1, 1:-1] = pred
        return self.match_padded(padded.ravel())

    def match_padded(self, img: np.ndarray) -> int:
        """``match`` of a flat uint8 map on the grid padded by one pixel (as
        ``threshold_and_thin`` writes it)."""
        return int(self._count_matches(img, self.gt_yx, self.half_widths, self.pred_id,
                                       self.next_col, self.search_budget))


class MaxFlowEdgeMatcher:
    """The reference :class:`EdgeMatcher`: the same count as a maximum flow in scipy (the
    implementation before the compiled one; the tests' oracle)."""

    def __init__(self, gt: np.ndarray, radius: float):
        from scipy.ndimage import distance_transform_edt
        self.gt_yx = np.argwhere(gt)
        self.shape = gt.shape
        self.offsets = edge_disk_offsets(radius)
        self.gt_id = np.full(gt.shape, -1, dtype=np.int64)
        self.gt_id[self.gt_yx[:, 0], self.gt_yx[:, 1]] = np.arange(len(self.gt_yx))
        # Euclidean distance to the nearest label pixel: <= radius iff one is in the disk (the
        # margin keeps every such pixel when sqrt and the disk's d^2 <= r^2 round apart; a
        # pixel let in with nothing in reach only adds an unmatched vertex)
        self.near = (distance_transform_edt(gt == 0) <= radius + 1e-6) if len(self.gt_yx) \
            else None

    def match(self, pred: np.ndarray) -> int:
        if self.near is None:
            return 0
        pred_yx = np.argwhere(pred & self.near)
        if len(pred_yx) == 0:
            return 0
        h, w = self.shape
        rows, cols = [], []
        for dy, dx in self.offsets:
            y, x = pred_yx[:, 0] + dy, pred_yx[:, 1] + dx
            inside = np.flatnonzero((y >= 0) & (y < h) & (x >= 0) & (x < w))
            target = self.gt_id[y[inside], x[inside]]
            hit = target >= 0
            rows.append(inside[hit])
            cols.append(target[hit])
        return _maximum_matching(np.concatenate(rows), np.concatenate(cols), len(pred_yx),
                                 len(self.gt_yx))


def _maximum_matching(left: np.ndarray, right: np.ndarray, n_left: int, n_right: int) -> int:
    """Size of a maximum matching of the bipartite graph with edges ``(left[k], right[k])``:
    the maximum flow from a source through every left vertex, the edges and every right
    vertex to a sink, all capacities 1 (scipy's Dinic, which on such unit networks is
    Hopcroft-Karp: O(E sqrt(V)); scipy's ``maximum_bipartite_matching`` takes exponential
    time on such layered graphs, scipy issue 26147)."""
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import maximum_flow
    source, sink = n_left + n_right, n_left + n_right + 1
    right_ids = n_left + np.arange(n_right)
    tails = np.concatenate([np.full(n_left, source), left, right_ids])
    heads = np.concatenate([np.arange(n_left), n_left + right, np.full(n_right, sink)])
    graph = csr_array((np.ones(len(tails), dtype=np.int32), (tails, heads)),
                      shape=(sink + 1, sink + 1))
    return int(maximum_flow(graph, source, sink, method='dinic').flow_value)


def edge_level_counts(q: np.ndarray, gt_edge: np.ndarray, levels: Sequence[int], radius: float,
                      thin: bool = True, impl: str = 'compiled') -> np.ndarray:
    """(len(levels), 2) int64: for each quantised level L, the matched pixels and the
    predicted pixels of the map ``q >= L`` (``q``: (H, W) uint8), thinned when ``thin``,
    matched with ``gt_edge`` (bool (H, W)) within ``radius`` pixels."""
    _check_impl(impl)
    q = np.ascontiguousarray(q, dtype=np.uint8)
    gt_edge = np.asarray(gt_edge).astype(bool)
    out = np.zeros((len(levels), 2), np.int64)
    if impl == 'reference':
        from skimage.morphology import thin as skimage_thin
        matcher = MaxFlowEdgeMatcher(gt_edge, radius)
        for i, level in enumerate(levels):
            edges = q >= level
            if thin and edges.any():
                edges = skimage_thin(edges)
            out[i] = matcher.match(edges), int(edges.sum())
        return out
    from . import _edge_kernels
    matcher = EdgeMatcher(gt_edge, radius)
    h, w = q.shape
    img = np.zeros((h + 2) * (w + 2), np.uint8)  # the one-pixel border stays 0
    # pixels at or above each level: two levels keeping as many pixels keep the same ones
    at_or_above = np.concatenate([np.cumsum(np.bincount(q.ravel(), minlength=256)[::-1])[::-1],
                                  [0]])
    done = {}
    for i, level in enumerate(levels):
        level = min(max(int(level), 0), 256)
        if at_or_above[level] not in done:
            predicted = _edge_kernels.threshold_and_thin(q, level, THIN_LUT_FIRST,
                                                         THIN_LUT_SECOND, bool(thin), img)
            done[at_or_above[level]] = (matcher.match_padded(img) if predicted else 0), predicted
        out[i] = done[at_or_above[level]]
    return out
