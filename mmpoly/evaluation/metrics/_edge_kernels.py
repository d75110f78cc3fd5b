"""Compiled (numba) kernels behind :mod:`mmpoly.evaluation.metrics.edges`.

Imported on first use only, so that ``import mmpoly`` does not pay for numba. ``cache=True``
keeps the machine code on disk (``__pycache__``): a test worker or a second process loads it
instead of compiling again.

Images are flat uint8 arrays of a padded grid (``width`` columns, at least one zero pixel
around the image), so that the 8 neighbours of an image pixel ``p`` are ``p +- 1``,
``p +- width`` and ``p +- width +- 1`` without bounds checks.
"""
import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline='always')
def _neighbour_code(img, p, width):
    """scikit-image's ``ndi.correlate(skel, [[8, 4, 2], [16, 0, 1], [32, 64, 128]])`` at p:
    bit 0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE."""
    up, down = p - width, p + width
    return (np.int64(img[p + 1]) | (np.int64(img[up + 1]) << 1) | (np.int64(img[up]) << 2)
            | (np.int64(img[up - 1]) << 3) | (np.int64(img[p - 1]) << 4)
            | (np.int64(img[down - 1]) << 5) | (np.int64(img[down]) << 6)
            | (np.int64(img[down + 1]) << 7))


@njit(cache=True, nogil=True)
def threshold_and_thin(levels, level, lut_a, lut_b, thin, img):
    """``levels >= level`` ((H, W) uint8) written into ``img`` (flat, (H + 2) x (W + 2), its
    one-pixel border 0), then, when ``thin``, scikit-image's ``thin`` of it in place; returns
    the number of pixels on.

    scikit-image repeats iterations of two parallel subiterations (``lut_a``, then ``lut_b``:
    every pixel whose neighbour code the LUT marks is deleted at once, codes taken before
    the subiteration) until an iteration deletes nothing. Here each subiteration looks only at
    the pixels whose code can have changed since the same LUT last looked at them: the
    foreground neighbours of the pixels deleted in the two subiterations before it (every
    other pixel has the code for which that LUT already said keep). The first two
    subiterations look at every foreground pixel. Same deletions, same order: identical maps.
    """
    h, w = levels.shape
    width = w + 2
    n = img.size
    candidates = np.empty(n, np.int32)
    count = 0
    for y in range(h):
        row = (y + 1) * width + 1
        for x in range(w):
            on = levels[y, x] >= level
            img[row + x] = on
            if on:
                candidates[count] = row + x
                count += 1
    if not thin or count == 0:
        return count
    left = count
    deleted = np.empty((2, n), np.int32)  # this and the previous subiteration's deletions
    n_deleted = np.zeros(2, np.int64)
    queued = np.full(n, -1, np.int32)  # the subiteration that last queued a pixel
    offsets = np.array([1, -width + 1, -width, -width - 1, -1, width - 1, width, width + 1])
    sub, deleted_this_iteration = 0, 0
    while True:
        lut = lut_a if sub % 2 == 0 else lut_b
        slot = sub % 2
        nd = 0
        for i in range(count):
            p = candidates[i]
            if lut[_neighbour_code(img, p, width)]:
                deleted[slot, nd] = p
                nd += 1
        for i in range(nd):
            img[deleted[slot, i]] = 0
        n_deleted[slot] = nd
        left -= nd
        deleted_this_iteration += nd
        if sub % 2 == 1:
            if deleted_this_iteration == 0:
                return left
            deleted_this_iteration = 0
        sub += 1
        if sub == 1:  # the first lut_b pass: every pixel still on
            kept = 0
            for i in range(count):
                if img[candidates[i]]:
                    candidates[kept] = candidates[i]
                    kept += 1
            count = kept
            continue
        count = 0
        for s in range(2):
            for i in range(n_deleted[s]):
                d = deleted[s, i]
                for k in range(8):
                    q = d + offsets[k]
                    if img[q] and queued[q] != sub:
                        queued[q] = sub
                        candidates[count] = q
                        count += 1


@njit(cache=True, nogil=True)
def count_matches(pred, gt_yx, half_widths, pred_id, next_col):
    """Size of a maximum matching between the label pixels ``gt_yx`` ((G, 2)) and the
    predicted pixels (``pred``: flat, (H + 2) x (W + 2), as ``threshold_and_thin`` writes
    it) within the disk (row dy = j - r of it spans dx = -half_widths[j]..half_widths[j];
    -1: empty row): Hopcroft-Karp after a greedy start.

    ``pred_id`` and ``next_col`` are scratch grids padded by r ((H + 2r, W + 2r) and
    (H + 2r, W + 2r + 1), int32; ``next_col``'s padding rows hold W + 2r, "none"). The label
    pixels are the left side: the searches start from the free ones, which are few (the
    predicted pixels are many at low thresholds, most of them unmatched).
    """
    r = (half_widths.size - 1) // 2
    gh, gw = pred_id.shape
    h, w = gh - 2 * r, gw - 2 * r
    pred_width = w + 2
    # ids of the predicted pixels and, per row, the next predicted column at or after x
    n_right = 0
    for y in range(h):
        gy = y + r
        row = (y + 1) * pred_width + 1
        nxt = gw
        next_col[gy, gw] = gw
        for gx in range(gw - 1, -1, -1):
            x = gx - r
            if 0 <= x < w and pred[row + x]:
                pred_id[gy, gx] = n_right
                n_right += 1
                nxt = gx
            next_col[gy, gx] = nxt
    n_left = gt_yx.shape[0]
    if n_right == 0 or n_left == 0:
        return 0
    # adjacency (CSR): each disk row's predicted pixels are found by jumping through
    # next_col, so the cost is the number of edges plus one lookup per disk row
    start = np.empty(n_left + 1, np.int64)
    adj = np.empty(max(16 * n_left, 1024), np.int32)
    n_edges = 0
    for u in range(n_left):
        start[u] = n_edges
        gx = gt_yx[u, 1] + r
        for j in range(half_widths.size):
            hw = half_widths[j]
            if hw < 0:
                continue
            gy = gt_yx[u, 0] + j  # image row y + j - r on the grid padded by r
            c = next_col[gy, gx - hw]
            while c <= gx + hw:
                if n_edges == adj.size:
                    grown = np.empty(2 * adj.size, np.int32)
                    grown[:n_edges] = adj[:n_edges]
                    adj = grown
                adj[n_edges] = pred_id[gy, c]
                n_edges += 1
                c = next_col[gy, c + 1]
    start[n_left] = n_edges
    return _hopcroft_karp(start, adj, n_left, n_right)


@njit(cache=True, nogil=True)
def _hopcroft_karp(start, adj, n_left, n_right):
    mate_left = np.full(n_left, -1, np.int32)
    mate_right = np.full(n_right, -1, np.int32)
    matched = 0
    for u in range(n_left):  # greedy start: most vertices are matched here
        for e in range(start[u], start[u + 1]):
            v = adj[e]
            if mate_right[v] < 0:
                mate_right[v] = u
                mate_left[u] = v
                matched += 1
                break
    if matched == n_left:
        return matched
    unreached = np.iinfo(np.int32).max
    dist = np.empty(n_left, np.int32)
    queue = np.empty(n_left, np.int32)
    edge_at = np.empty(n_left, np.int64)
    stack = np.empty(n_left, np.int32)
    while True:
        # BFS: layers of left vertices along alternating paths from the free ones
        head, tail = 0, 0
        for u in range(n_left):
            if mate_left[u] < 0:
                dist[u] = 0
                queue[tail] = u
                tail += 1
            else:
                dist[u] = unreached
        free_reached = False
        while head < tail:
            u = queue[head]
            head += 1
            for e in range(start[u], start[u + 1]):
                m = mate_right[adj[e]]
                if m < 0:
                    free_reached = True
                elif dist[m] == unreached:
                    dist[m] = dist[u] + 1
                    queue[tail] = m
                    tail += 1
        if not free_reached:
            return matched
        # DFS along the layers from every free left vertex: vertex-disjoint augmenting paths
        for u in range(n_left):
            edge_at[u] = start[u]
        for root in range(n_left):
            if mate_left[root] >= 0:
                continue
            depth = 1
            stack[0] = root
            while depth > 0:
                x = stack[depth - 1]
                if edge_at[x] == start[x + 1]:
                    dist[x] = unreached  # a dead end for the rest of this phase
                    depth -= 1
                    continue
                v = adj[edge_at[x]]
                edge_at[x] += 1
                m = mate_right[v]
                if m < 0:
                    # augment: each vertex on the stack takes the edge it last tried
                    for i in range(depth):
                        a = stack[i]
                        b = adj[edge_at[a] - 1]
                        mate_left[a] = b
                        mate_right[b] = a
                    matched += 1
                    depth = 0
                elif dist[m] == dist[x] + 1:
                    stack[depth] = m
                    depth += 1
