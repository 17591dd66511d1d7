"""``item_repr: ngram``: the sum of one embedding per window of ``ngram_n`` consecutive codes.

The item's semantic ID ``(c_0, ..., c_{L-1})`` (L levels, K codes per level) is cut into its
``L - n + 1`` windows of n consecutive codes; window ``l`` has its own block of ``K**n`` rows,
and its row inside the block reads the window's codes as a base-K number::

    index(l) = l * K**n + sum_j c_{l+j} * K**(n-1-j)      j = 0 .. n-1

unigram (n=1): ``l*K + c_l``, ``L*K`` rows; bigram (n=2): ``l*K*K + c_l*K + c_{l+1}``,
``(L-1)*K*K`` rows. There is no item-ID table, so items with the same semantic ID share one
vector (Singh et al., arXiv 2306.08121).
"""

import torch

from recbole_usr.config_values import config_value
from recbole_usr.model.item_representations.frozen_codes import frozen_codes
from recbole_usr.model.item_representations.summed_rows import SummedRowsItemEmbedding


def ngram_indices(codes, codebook_size, n):
    """Row of each n-gram window: ``[N, L - n + 1]`` long (see the module docstring)."""
    codes = torch.as_tensor(codes, dtype=torch.long)
    n_levels = codes.shape[1]
    if not 1 <= n <= n_levels:
        raise ValueError(f"ngram_n must be between 1 and the number of levels ({n_levels}), got {n}.")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}).")
    block = codebook_size**n
    windows = []
    for start in range(n_levels - n + 1):
        index = torch.zeros(codes.shape[0], dtype=torch.long)
        for j in range(n):
            index = index * codebook_size + codes[:, start + j]
        windows.append(start * block + index)
    return torch.stack(windows, dim=1)


def ngram_table_rows(n_levels, codebook_size, n):
    return (n_levels - n + 1) * codebook_size**n


class NGramItemEmbedding(SummedRowsItemEmbedding):
    uses_semantic_ids = True
    def __init__(self, codes, codebook_size, dim, n=1, initializer_range=0.02):
        codes = torch.as_tensor(codes, dtype=torch.long)
        rows = ngram_table_rows(codes.shape[1], codebook_size, n)
        super().__init__(ngram_indices(codes, codebook_size, n), rows, dim, initializer_range)
        self.n = n
        self.table_name = {1: "unigram_table", 2: "bigram_table"}.get(n, f"{n}-gram_table")
        self.register_buffer("codes", codes)
        self.codebook_size = codebook_size

    @classmethod
    def from_config(cls, config, dataset):
        codes, codebook_size, stats = frozen_codes(config, dataset)
        module = cls(codes, codebook_size, config_value(config, "hidden_size", 64),
                     int(config_value(config, "ngram_n", 1)), config_value(config, "initializer_range", 0.02))
        module.code_statistics = stats
        return module
