"""How well a code table uses its codebooks and how well it tells items apart.

Why first-class: a tokenizer can reconstruct well and still be useless as an ID scheme,
when a level collapses onto a few codewords or many items share one code tuple. These are
the numbers of Table 1 of arXiv 2502.16474 (per-level activation, unique coverage), plus
perplexity and collision sizes, and TIGER's fix for collisions (an extra level).
"""

import math

import torch


def _tuple_groups(codes):
    """Inverse index [N] of each row's tuple among the distinct tuples, and each group's size."""
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return inverse, counts


def codebook_statistics(codes, codebook_size):
    """Statistics of a code table ``codes`` [N, L] with ``codebook_size`` codewords per level.

    - ``activation[l]``: fraction of the K codewords of level l used by at least one item;
    - ``perplexity[l]``: exp of the entropy (nats) of level l's code usage; equals the number
      of codewords used when usage is uniform, 1 when all items share one codeword;
    - ``unique_coverage``: fraction of items whose full tuple no other item has;
    - ``n_distinct``: number of distinct tuples; ``max_collision``: largest group of items
      sharing one tuple (1 when all are unique).
    """
    codes = torch.as_tensor(codes, dtype=torch.long)
    if codes.dim() != 2:
        raise ValueError(f"codes must be [N, L], got shape {tuple(codes.shape)}")
    n_items, n_levels = codes.shape
    activation, perplexity = [], []
    for level in range(n_levels):
        usage = torch.bincount(codes[:, level], minlength=codebook_size).double()
        activation.append(float((usage > 0).sum()) / codebook_size)
        p = usage[usage > 0] / max(n_items, 1)
        perplexity.append(math.exp(float(-(p * p.log()).sum())) if n_items else 0.0)
    if n_items:
        inverse, counts = _tuple_groups(codes)
        unique_coverage = float((counts[inverse] == 1).double().mean())
        n_distinct, max_collision = int(counts.numel()), int(counts.max())
    else:
        unique_coverage, n_distinct, max_collision = 0.0, 0, 0
    return {
        "n_items": int(n_items),
        "codebook_size": int(codebook_size),
        "activation": activation,
        "perplexity": perplexity,
        "unique_coverage": unique_coverage,
        "n_distinct": n_distinct,
        "max_collision": max_collision,
    }


def degenerate_code_warnings(stats, min_unique_coverage, where="semantic IDs"):
    """Warnings (logged, and returned for the results file) when a code table is useless as
    IDs: every item shares one tuple, or fewer than ``min_unique_coverage`` of the items have
    a tuple of their own. Not an error: the run itself is valid, only its IDs are poor."""
    from logging import getLogger

    warnings = []
    if stats["n_items"] > 1 and stats["n_distinct"] == 1:
        warnings.append(f"{where}: all {stats['n_items']} items share one semantic ID")
    elif min_unique_coverage is not None and stats["unique_coverage"] < min_unique_coverage:
        warnings.append(
            f"{where}: unique coverage {stats['unique_coverage']:.4f} is below min_unique_coverage="
            f"{min_unique_coverage} ({stats['n_distinct']} distinct IDs for {stats['n_items']} items, "
            f"largest group {stats['max_collision']}, per-level activation "
            f"{[round(a, 3) for a in stats['activation']]}); a larger rq_codebook_size or more rq_levels may help"
        )
    for warning in warnings:
        getLogger().warning(warning)
    return warnings


def append_dedup_level(codes):
    """Append TIGER's de-duplication level: [N, L] -> [N, L+1].

    Items sharing a tuple are numbered 0, 1, 2, ... in the order they appear; an item whose
    tuple is already unique gets 0. Every row of the result is distinct.
    """
    codes = torch.as_tensor(codes, dtype=torch.long)
    if codes.shape[0] == 0:
        return codes.new_zeros(0, codes.shape[1] + 1)
    inverse, counts = _tuple_groups(codes)
    order = torch.sort(inverse, stable=True).indices  # rows grouped by tuple, original order kept
    starts = torch.cumsum(counts, 0) - counts  # first position of each group in `order`
    dedup = torch.empty_like(inverse)
    dedup[order] = torch.arange(codes.shape[0]) - starts[inverse[order]]
    return torch.cat([codes, dedup[:, None]], dim=1)


def format_stats_table(stats_by_scheme):
    """A plain-text table, one row per scheme, of :func:`codebook_statistics` outputs (percent)."""
    if not stats_by_scheme:
        return ""
    n_levels = max(len(s["activation"]) for s in stats_by_scheme.values())
    header = (
        ["scheme"]
        + [f"act@{i + 1}" for i in range(n_levels)]
        + [f"ppl@{i + 1}" for i in range(n_levels)]
        + ["unique cov", "distinct", "max coll"]
    )
    rows = []
    for name, s in stats_by_scheme.items():
        act = [f"{100 * a:.2f}%" for a in s["activation"]] + [""] * (n_levels - len(s["activation"]))
        ppl = [f"{p:.1f}" for p in s["perplexity"]] + [""] * (n_levels - len(s["perplexity"]))
        rows.append(
            [str(name)] + act + ppl
            + [f"{100 * s['unique_coverage']:.2f}%", str(s["n_distinct"]), str(s["max_collision"])]
        )
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])
