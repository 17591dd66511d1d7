"""The shared body of the n-gram, SentencePiece and hashing representations (arXiv 2306.08121):
an item vector is the sum of some rows of one table, the rows fixed per item."""

import torch
from torch import nn
from torch.nn import functional as F

from recbole_usr.model.item_representations.parameters import count_parameters, size_figures


def padding_mask(n_items):
    """Float ``[n_items, 1]``: 0 for the padding row 0, 1 elsewhere."""
    mask = torch.ones(n_items, 1)
    mask[0] = 0.0
    return mask


class SummedRowsItemEmbedding(nn.Module):
    """Item vector = sum of rows ``index[item, :]`` of one table; ``-1`` entries are skipped.

    ``index`` [n_items, slots] is a buffer computed once, the table is the only trainable
    parameter. Every table row is a real code / piece / bucket (no padding row), initialised
    as SASRec's.
    """

    table_name = "table"

    def __init__(self, index, n_rows, dim, initializer_range=0.02):
        super().__init__()
        self.dim = dim
        self.table = nn.Embedding(n_rows, dim)
        self.table.weight.data.normal_(mean=0.0, std=initializer_range)
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() == 1:
            index = index[:, None]
        if index.numel() and int(index.max()) >= n_rows:
            raise ValueError(f"row index {int(index.max())} out of range for a table of {n_rows} rows.")
        self.register_buffer("row_index", index)
        self.register_buffer("item_mask", padding_mask(index.shape[0]), persistent=False)

    @property
    def n_items(self):
        return self.row_index.shape[0]

    def forward(self):
        used = (self.row_index >= 0).unsqueeze(-1).to(self.table.weight.dtype)
        rows = F.embedding(self.row_index.clamp(min=0), self.table.weight)  # [N, slots, dim]
        return (rows * used).sum(dim=1) * self.item_mask, {}

    def index_entries(self):
        """Row indices a served model stores per item (0 for a hashed ID: computed, not stored)."""
        return int((self.row_index[1:] >= 0).sum())

    def describe(self):
        size = count_parameters(self.table)
        return {self.table_name: size, **size_figures(size, self.n_items, self.dim, self.index_entries())}

    def epoch_statistics(self):
        return {}  # codes, pieces and buckets are frozen: their statistics are logged once
