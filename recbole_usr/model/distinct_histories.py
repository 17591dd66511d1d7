"""Encode each distinct history once in RecBole's sampled evaluation.

RecBole's ``uni99``/``pop99`` evaluation feeds ``predict`` one row per (user, candidate),
each row carrying the user's whole history again: 100 copies of the same sequence. A
model that encodes every row pays 100x; grouping the rows by history first pays 1x.
"""

import torch


def distinct_histories(*columns):
    """``(distinct_columns, row_of)``: ``columns`` (each ``[B]`` or ``[B, *]``) restricted to
    their distinct rows, and for every input row the index of its distinct row, so that
    ``distinct_columns[i][row_of] == columns[i]``."""
    flat = [column.reshape(column.shape[0], -1) for column in columns]
    widths = [part.shape[1] for part in flat]
    distinct, row_of = torch.unique(torch.cat(flat, dim=1), dim=0, return_inverse=True)
    parts = torch.split(distinct, widths, dim=1)
    return tuple(part.reshape(-1, *column.shape[1:]) for part, column in zip(parts, columns)), row_of
