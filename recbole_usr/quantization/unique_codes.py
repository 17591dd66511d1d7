"""Collision-free last level: items that share a code prefix get distinct last codewords.

Why: residual quantisation gives every item its nearest codeword at each level, so items
with near-identical text end up with the same semantic ID (the unified paper reports ~17%
of items sharing one; TIGER appends a counter level to separate them). Here the last level
is instead an *assignment*: within each group of items sharing the first L-1 codes, items
are matched to distinct last-level codewords so that the summed distance is smallest
(Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``). An item alone in its
group keeps its nearest codeword, so nothing changes where there is no collision, and the
ID keeps its length and meaning (the last codeword is the nearest *free* one).

A group larger than the codebook cannot be made unique: its first K items (cheapest
matching) get distinct codewords, the others keep their nearest one.

``first`` marks the items assigned before the others (the items the tokenizer was fitted
on): a held-out item then takes a codeword its prefix group has left free, as a new item
would in production, and never moves an existing item's code.
"""

import numpy as np
import torch


def _match(cost, rows, free):
    """Distinct columns (among ``free``) for as many ``rows`` of ``cost`` as possible;
    returns (matched rows, their columns) with the smallest total cost."""
    from scipy.optimize import linear_sum_assignment

    sub = cost[np.ix_(rows, free)]
    r, c = linear_sum_assignment(sub)
    return rows[r], free[c]


def unique_last_codes(residual, prefix, level, first=None):
    """Last-level codes [N] for ``residual`` [N, D] (the residual entering the last level),
    distinct within each group of equal ``prefix`` [N, L-1] rows where the codebook allows.

    ``level`` is the last :class:`~recbole_usr.quantization.rq_tokenizer.CodebookLevel`
    (its distance and codewords decide the cost); ``first`` an optional bool mask [N] of
    rows matched before the rest.
    """
    device = residual.device
    residual = residual.detach()
    nearest = level.assign(residual)
    n = residual.shape[0]
    if n == 0:
        return nearest
    prefix = prefix.cpu() if prefix.shape[1] else torch.zeros(n, 1, dtype=torch.long)  # one level: one group
    _, group, counts = torch.unique(prefix, dim=0, return_inverse=True, return_counts=True)
    crowded = (counts > 1).nonzero().squeeze(1)
    if crowded.numel() == 0:
        return nearest
    codes = nearest.cpu().numpy().copy()
    order = torch.argsort(group, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    first = np.ones(n, dtype=bool) if first is None else first.cpu().numpy().astype(bool)
    all_columns = np.arange(level.codebook_size)
    for g in crowded.tolist():
        rows = order[starts[g]:starts[g] + counts[g]].numpy()
        if len(np.unique(codes[rows])) == len(rows):
            continue  # no collision: the nearest codewords are already the cheapest matching
        with torch.no_grad():  # costs where the level lives (its learned weights may be on a GPU)
            cost = level.distance.pairwise(residual[torch.from_numpy(rows).to(device)], level.codebook).cpu().numpy()
        local = np.arange(len(rows))
        taken = np.zeros(level.codebook_size, dtype=bool)
        for batch in (local[first[rows]], local[~first[rows]]):
            free = all_columns[~taken]
            if len(batch) == 0 or len(free) == 0:
                continue
            matched, columns = _match(cost, batch, free)
            codes[rows[matched]] = columns
            taken[columns] = True
    return torch.from_numpy(codes).to(device)
