"""Lookup distances for residual quantisation, one small object per distance.

Why objects rather than a flag: a codebook level, k-means and the statistics all need the
same two facts about a distance, namely *how vectors are viewed* when compared
(``project``: L2-normalised for cosine, unchanged for Euclidean) and *how far apart* two
sets of vectors are (``pairwise``). Keeping both together lets a level swap its distance
without touching any other code (the hybrid scheme of arXiv 2502.16474 is just a list).
"""

import torch
import torch.nn.functional as F

EPS = 1e-8  # keeps the normalisation of an all-zero vector finite (it maps to zero)


class Distance:
    """Interface: ``project`` views vectors in the comparison space, ``pairwise`` compares."""

    name = "base"

    def project(self, x):
        raise NotImplementedError

    def pairwise(self, x, codebook):
        """Distances [N, K] between the rows of ``x`` [N, D] and ``codebook`` [K, D]."""
        raise NotImplementedError

    def nearest(self, x, codebook, chunk_size=8192):
        """Index [N] of the closest codeword for each row, computed in chunks to bound memory."""
        out = [
            self.pairwise(x[i:i + chunk_size], codebook).argmin(dim=1)
            for i in range(0, x.shape[0], chunk_size)
        ]
        return torch.cat(out) if out else x.new_zeros(0, dtype=torch.long)

    def __repr__(self):
        return f"{type(self).__name__}()"


class CosineDistance(Distance):
    """1 - cos(x, c). Ignores length, so a level's choice depends on direction only."""

    name = "cosine"

    def project(self, x):
        return F.normalize(x, p=2, dim=-1, eps=EPS)

    def pairwise(self, x, codebook):
        return 1.0 - self.project(x) @ self.project(codebook).t()


class EuclideanDistance(Distance):
    """Squared Euclidean distance ||x - c||^2 (same argmin as the distance, cheaper)."""

    name = "euclidean"

    def project(self, x):
        return x

    def pairwise(self, x, codebook):
        # ||x||^2 - 2 x.c + ||c||^2, clamped: rounding can make it slightly negative.
        d = (x * x).sum(1, keepdim=True) - 2.0 * x @ codebook.t() + (codebook * codebook).sum(1)[None, :]
        return d.clamp_min_(0.0)


class LearnedMixDistance(Distance):
    """``w (1 - cos(x, c)) + (1 - w) ||x - c||^2 / s``: a per-level mix of the two lookups.

    ``w`` = sigmoid of the owning level's ``mix_logit`` (learned, see
    :meth:`~recbole_usr.quantization.rq_tokenizer.CodebookLevel.mix_path`) and ``s`` its
    ``euclid_scale`` (the mean squared residual norm), which puts both terms on a scale of
    about 1. Without an owner (a bare ``get_distance("learned")``) ``w`` = 0.5 and ``s`` = 1.
    Vectors are compared unprojected, as by the Euclidean lookup.
    """

    name = "learned"

    def __init__(self, owner=None):
        self.owner = owner

    def weight(self):
        return torch.sigmoid(self.owner.mix_logit) if self.owner is not None else torch.tensor(0.5)

    def project(self, x):
        return x

    def pairwise(self, x, codebook):
        scale = self.owner.euclid_scale if self.owner is not None else 1.0
        w = self.weight()
        return w * COSINE.pairwise(x, codebook) + (1 - w) * EUCLIDEAN.pairwise(x, codebook) / scale


COSINE, EUCLIDEAN = CosineDistance(), EuclideanDistance()
DISTANCES = {"cosine": CosineDistance, "euclidean": EuclideanDistance, "learned": LearnedMixDistance}

# Whole-scheme shorthands, handy on the command line (--rq_distances=hybrid).
SCHEMES = ("cosine", "euclidean", "hybrid", "learned")


def get_distance(name):
    """The :class:`Distance` called ``name`` (``"cosine"``, ``"euclidean"`` or ``"learned"``)."""
    key = str(name).strip().lower()
    if key not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose from {sorted(DISTANCES)}")
    return DISTANCES[key]()


def resolve_distances(spec, n_levels):
    """Per-level distance names from a list, or from a scheme name.

    ``"cosine"`` / ``"euclidean"`` / ``"learned"`` use that distance at every level; ``"hybrid"`` uses cosine
    on all levels but the last, which is Euclidean (the paper's scheme). A list must have
    one entry per level.
    """
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key == "hybrid":
            return ["cosine"] * (n_levels - 1) + ["euclidean"]
        if key in DISTANCES:
            return [key] * n_levels
        spec = [s for s in key.replace(",", " ").split() if s]  # "cosine,cosine,euclidean"
    names = [get_distance(s).name for s in spec]
    if len(names) != n_levels:
        raise ValueError(f"{len(names)} distances given for {n_levels} levels: {names}")
    return names


def scheme_name(names):
    """Inverse of :func:`resolve_distances` for display: 'cosine', 'euclidean', 'hybrid' or a list."""
    names = list(names)
    if all(n == names[0] for n in names):
        return names[0]
    if names[-1] == "euclidean" and all(n == "cosine" for n in names[:-1]):
        return "hybrid"
    return ",".join(names)
