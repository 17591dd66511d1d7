"""``item_repr: hash``: item ``i`` reads row ``hash(i)`` of a ``hash_buckets``-row table.

The baseline that shares rows at random instead of by content (arXiv 2306.08121): the
universal hash ``((a * id + b) mod p) mod buckets``, p = 2^31 - 1, a and b drawn from
``hash_seed``.
"""

import numpy as np
import torch

from recbole_usr.config_values import config_value
from recbole_usr.model.item_representations.summed_rows import SummedRowsItemEmbedding

HASH_PRIME = 2**31 - 1


def hash_item_ids(item_ids, buckets, seed=0):
    """Bucket of each item id: ``((a * id + b) mod p) mod buckets``, a, b drawn from ``seed``."""
    rng = np.random.RandomState(seed)
    a = int(rng.randint(1, HASH_PRIME))
    b = int(rng.randint(0, HASH_PRIME))
    ids = torch.as_tensor(item_ids, dtype=torch.long)
    return ((a * ids + b) % HASH_PRIME) % int(buckets)  # a, ids < 2^31: no int64 overflow


class HashItemEmbedding(SummedRowsItemEmbedding):
    table_name = "hash_table"

    def __init__(self, n_items, dim, buckets, seed=0, initializer_range=0.02):
        if buckets < 1:
            raise ValueError(f"hash_buckets must be >= 1, got {buckets}.")
        super().__init__(hash_item_ids(torch.arange(n_items), buckets, seed), buckets, dim, initializer_range)
        self.buckets = buckets

    @classmethod
    def from_config(cls, config, dataset):
        return cls(
            dataset.item_num,
            config_value(config, "hidden_size", 64),
            int(config_value(config, "hash_buckets", 2048)),
            config_value(config, "hash_seed", config["seed"]),
            config_value(config, "initializer_range", 0.02),
        )

    def index_entries(self):
        return 0  # a served model computes the bucket from the ID: nothing stored per item

    def describe(self):
        counts = super().describe()
        counts["distinct_buckets_used"] = int(torch.unique(self.row_index[1:]).numel())
        return counts
