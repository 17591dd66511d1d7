"""k-means in torch, used to initialise each codebook level from data.

Why: randomly initialised codebooks leave most codewords far from every residual, so they
are never selected and the semantic IDs collapse onto a few codes (TIGER, arXiv
2305.05065, initialises with k-means for this reason). The clustering uses the level's own
:class:`~recbole_usr.quantization.distances.Distance`, so a cosine level gets spherical
k-means (points and centroids on the unit sphere).

On a large catalogue the Lloyd iterations run on a random sample of at most
``max_points`` rows (FAISS's rule: 256 points per centroid are enough to place it) and every
row is then assigned to the nearest centroid; below that size nothing changes.

All randomness comes from torch's generator (the global one unless ``generator`` is
given), so results are reproducible under ``torch.manual_seed``.
"""

import torch

from recbole_usr.quantization.distances import Distance, get_distance


def _as_distance(distance):
    return distance if isinstance(distance, Distance) else get_distance(distance)


def sample_rows(n, k, generator):
    """k row indices of an n-row table: distinct when possible, with repeats when n < k."""
    if n >= k:
        return torch.randperm(n, generator=generator)[:k]
    return torch.cat([torch.randperm(n, generator=generator), torch.randint(n, (k - n,), generator=generator)])


def kmeans_plus_plus(points, k, distance, generator=None):
    """k-means++ seeding: each next centre is drawn with probability proportional to its distance
    to the nearest centre already chosen (D^2 weighting for Euclidean, 1 - cos for cosine)."""
    distance = _as_distance(distance)
    n = points.shape[0]
    idx = torch.empty(k, dtype=torch.long)
    idx[0] = torch.randint(n, (1,), generator=generator)
    nearest = distance.pairwise(points, points[idx[:1]]).squeeze(1)
    for i in range(1, k):
        weights = nearest.clamp_min(0.0)
        if float(weights.sum()) <= 0.0:  # every point sits on a centre already: fall back to uniform
            weights = torch.ones_like(weights)
        idx[i] = torch.multinomial(weights, 1, generator=generator)
        nearest = torch.minimum(nearest, distance.pairwise(points, points[idx[i:i + 1]]).squeeze(1))
    return points[idx].clone()


def kmeans(x, k, distance="euclidean", n_iters=20, init="kmeans++", generator=None, max_points=None):
    """Cluster the rows of ``x`` [N, D] into ``k`` centroids with Lloyd iterations.

    Returns ``(centroids [k, D], assignment [N])``. Centroids live in the distance's
    comparison space (unit length for cosine). A cluster that empties keeps its previous
    centroid, so the result always has ``k`` finite rows, even when N < k. With
    ``max_points`` (None or 0: all rows) and N above it, the centroids are fitted on that
    many rows drawn without replacement and the assignment covers all N rows.
    """
    distance = _as_distance(distance)
    all_points = distance.project(x.detach().float())
    n = all_points.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    if max_points is not None and max_points < 0:
        raise ValueError(f"max_points must be >= 0 (0 = all rows), got {max_points}")
    sampled = bool(max_points) and n > max_points
    points = all_points[sample_rows(n, max_points, generator)] if sampled else all_points
    n = points.shape[0]
    if init == "kmeans++":
        centroids = kmeans_plus_plus(points, k, distance, generator)
    elif init == "random":
        centroids = points[sample_rows(n, k, generator)].clone()
    else:
        raise ValueError(f"unknown k-means init {init!r}; use 'kmeans++' or 'random'")

    assign = distance.nearest(points, centroids)
    for _ in range(n_iters):
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(points.dtype)
        filled = counts > 0
        centroids[filled] = distance.project(sums[filled] / counts[filled, None])
        new_assign = distance.nearest(points, centroids)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    if sampled:
        assign = distance.nearest(all_points, centroids)
    return centroids, assign
