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
    # each foreground pixel's neighbour code, kept current as pixels are deleted (a
    # deletion clears its bit in its 8 neighbours' codes): a look-up costs one load
    code = np.empty(n, np.uint8)
    for i in range(count):
        code[candidates[i]] = _neighbour_code(img, candidates[i], width)
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
            if lut[code[p]]:
                deleted[slot, nd] = p
                nd += 1
        for i in range(nd):  # after every decision: the subiteration is parallel
            d = deleted[slot, i]
            img[d] = 0
            for k in range(8):  # d is its neighbour's neighbour in the opposite direction
                code[d + offsets[k]] &= np.uint8(~(1 << ((k + 4) % 8)) & 255)
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
def count_matches(pred, gt_yx, half_widths, pred_id, next_col, budget_per_pixel=16):
    """Size of a maximum matching between the label pixels ``gt_yx`` ((G, 2), by row) and the
    predicted pixels (``pred``: flat, (H + 2) x (W + 2), as ``threshold_and_thin`` writes
    it) within the disk (row dy = j - r of it spans dx = -half_widths[j]..half_widths[j];
    -1: empty row): a greedy start, then augmenting paths (``_augment``).

    ``pred_id`` and ``next_col`` are scratch grids padded by r ((H + 2r, W + 2r) and
    (H + 2r, W + 2r + 1), int32; ``next_col``'s padding rows hold W + 2r, "none"). No graph
    is stored: a label pixel's predicted neighbours are read off ``next_col`` row by row of
    its disk, one look-up per row plus one per neighbour (``budget_per_pixel``: see below,
    in disk rows per label pixel). The label pixels are the side the
    searches start from: few of them are left free (the predicted pixels are many at low
    thresholds, most of them unmatched).
    """
    r = (half_widths.size - 1) // 2
    gh, gw = pred_id.shape
    h, w = gh - 2 * r, gw - 2 * r
    pred_width = w + 2
    n_left = gt_yx.shape[0]
    if n_left == 0:
        return 0
    # ids of the predicted pixels and, per row, the next predicted column at or after gx,
    # on the rows some label pixel's disk reaches (the columns right of the image keep the
    # "none" they were created with)
    n_right = 0
    for y in range(max(gt_yx[0, 0] - r, 0), min(gt_yx[n_left - 1, 0] + r + 1, h)):
        gy = y + r
        row = (y + 1) * pred_width + 1
        nxt = gw
        for x in range(w - 1, -1, -1):
            if pred[row + x]:
                pred_id[gy, x + r] = n_right
                n_right += 1
                nxt = x + r
            next_col[gy, x + r] = nxt
        for gx in range(r):
            next_col[gy, gx] = nxt
    if n_right == 0:
        return 0
    mate_left = np.full(n_left, -1, np.int32)
    mate_right = np.full(n_right, -1, np.int32)
    # greedy start, scanning each disk only up to a free predicted pixel: where it matches
    # every label pixel or every predicted one (most thresholds), that is the maximum
    matched = 0
    for u in range(n_left):
        gx = gt_yx[u, 1] + r
        for j in range(half_widths.size):
            hw = half_widths[j]
            if hw < 0:
                continue
            gy = gt_yx[u, 0] + j
            c = next_col[gy, gx - hw]
            while c <= gx + hw and mate_right[pred_id[gy, c]] >= 0:
                c = next_col[gy, c + 1]
            if c <= gx + hw:
                v = pred_id[gy, c]
                mate_right[v] = u
                mate_left[u] = v
                matched += 1
                break
    if matched == n_left or matched == n_right:
        return matched
    # augmenting paths, searched one free label pixel at a time (cheap where the greedy
    # start leaves few, as on edge maps); past a budget (dense maps on both sides, where
    # such searches can cost O(E) each), Hopcroft-Karp's O(E sqrt(V)) on the stored graph
    budget = budget_per_pixel * n_left * half_widths.size
    matched, dead, done = _augment(gt_yx, r, half_widths, next_col, pred_id, mate_left,
                                   mate_right, matched, budget)
    if done:
        return matched
    start = np.empty(n_left + 1, np.int64)  # the graph (CSR), counted then written
    n_edges = 0
    for u in range(n_left):
        start[u] = n_edges
        n_edges += _disk_neighbours(gt_yx[u, 0], gt_yx[u, 1] + r, half_widths, next_col,
                                    pred_id, start, 0, False)
    start[n_left] = n_edges
    adj = np.empty(n_edges, np.int32)
    for u in range(n_left):
        _disk_neighbours(gt_yx[u, 0], gt_yx[u, 1] + r, half_widths, next_col, pred_id, adj,
                         start[u], True)
    return _hopcroft_karp(start, adj, mate_left, mate_right, matched, dead)


@njit(cache=True, nogil=True, inline='always')
def _disk_neighbours(y, gx, half_widths, next_col, pred_id, out, at, write):
    """The predicted pixels in the disk around image row y, padded column gx: their ids
    written to out[at:] when ``write``; returns how many."""
    count = 0
    for j in range(half_widths.size):
        hw = half_widths[j]
        if hw < 0:
            continue
        gy = y + j  # image row y + j - r on the grid padded by r
        c = next_col[gy, gx - hw]
        while c <= gx + hw:
            if write:
                out[at + count] = pred_id[gy, c]
            count += 1
            c = next_col[gy, c + 1]
    return count


@njit(cache=True, nogil=True)
def _augment(gt_yx, r, half_widths, next_col, pred_id, mate_left, mate_right, matched,
             budget):
    """Grows the matching ``mate_left`` / ``mate_right`` (``matched`` pairs) to a maximum
    one and returns its size: from each free label pixel, one breadth-first search for an
    augmenting path (Berge: the matching is maximum when no free vertex has one), reading
    each reached label pixel's disk through ``next_col`` (no graph is stored: the greedy
    start leaves few searches, and most end near their start).

    A search that fails leaves its visited label pixels X with every predicted pixel in
    their disks matched into X or into the pixels of earlier failed searches: no augmenting
    path can enter that set, now or after later augmentations, so it is never searched
    again (the failed searches cost O(E) together).

    Returns (matched, dead: the vertices retired, done: False when ``budget`` disk entries
    were read before every free pixel was searched; the matching is valid either way).
    """
    n_left = mate_left.size
    dead = np.zeros(n_left, np.bool_)
    seen = np.full(n_left, -1, np.int32)  # the root whose search last reached the pixel
    came_from = np.empty(n_left, np.int32)  # the label pixel whose disk led to it
    queue = np.empty(n_left, np.int32)
    work = 0
    for root in range(n_left):
        if mate_left[root] >= 0:
            continue
        if work > budget:
            return matched, dead, False
        seen[root] = root
        queue[0] = root
        head, tail = 0, 1
        end_left, end_right = -1, -1
        while head < tail and end_left < 0:
            x = queue[head]
            head += 1
            gx = gt_yx[x, 1] + r
            for j in range(half_widths.size):
                hw = half_widths[j]
                if hw < 0:
                    continue
                gy = gt_yx[x, 0] + j  # image row y + j - r on the grid padded by r
                c = next_col[gy, gx - hw]
                while c <= gx + hw:
                    work += 1
                    v = pred_id[gy, c]
                    m = mate_right[v]
                    if m < 0:
                        end_left, end_right = x, v
                        break
                    if not dead[m] and seen[m] != root:
                        seen[m] = root
                        came_from[m] = x
                        queue[tail] = m
                        tail += 1
                    c = next_col[gy, c + 1]
                if end_left >= 0:
                    break
        if end_left < 0:
            for i in range(tail):
                dead[queue[i]] = True
            continue
        # flip the path: each label pixel takes the predicted pixel it was reached from
        x, v = end_left, end_right
        while True:
            previous = mate_left[x]
            mate_left[x] = v
            mate_right[v] = x
            if x == root:
                break
            v = previous
            x = came_from[x]
        matched += 1
    return matched, dead, True


@njit(cache=True, nogil=True)
def _hopcroft_karp(start, adj, mate_left, mate_right, matched, dead):
    """Grows the matching ``mate_left`` / ``mate_right`` (``matched`` pairs) to a maximum one
    on the graph ``start`` / ``adj`` (CSR) and returns its size; ``dead`` vertices (retired
    by ``_augment``) are never on an augmenting path and are left out."""
    n_left = mate_left.size
    unreached = np.iinfo(np.int32).max
    dist = np.empty(n_left, np.int32)
    queue = np.empty(n_left, np.int32)
    edge_at = np.empty(n_left, np.int64)
    stack = np.empty(n_left, np.int32)
    while True:
        # BFS: layers of left vertices along alternating paths from the free ones
        head, tail = 0, 0
        for u in range(n_left):
            if mate_left[u] < 0 and not dead[u]:
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
                elif dist[m] == unreached and not dead[m]:
                    dist[m] = dist[u] + 1
                    queue[tail] = m
                    tail += 1
        if not free_reached:
            return matched
        # DFS along the layers from every free left vertex: vertex-disjoint augmenting paths
        for u in range(n_left):
            edge_at[u] = start[u]
        for root in range(n_left):
            if mate_left[root] >= 0 or dead[root]:
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
