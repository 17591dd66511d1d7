"""How much of the seen-items-kept top k is the user's own history (``SeenShare``)."""

import torch

from recbole_usr.evaluation.seen_items import SeenShare

INF = float("inf")


class StubMask:
    """Fixed (row, item) pairs as seen, as SeenItemMask.seen_pairs gives them."""

    def __init__(self, seen):
        self.rows = torch.tensor([row for row, items in seen.items() for _ in items])
        self.items = torch.tensor([item for items in seen.values() for item in items])

    def seen_pairs(self, interaction, device):
        return self.rows.to(device), self.items.to(device)


def test_seen_share_counts_history_items_in_each_top_k_and_leaves_scores_alone():
    scores = torch.tensor([[-INF, 5.0, 4.0, 3.0, 2.0, 1.0],   # top 3: items 1, 2, 3
                           [-INF, 1.0, 2.0, 3.0, 4.0, 5.0]])  # top 3: items 5, 4, 3
    counter = SeenShare(StubMask({0: [1, 3], 1: [4, 3]}), topk=[3, 1])
    returned = counter.count(None, scores.clone())
    assert torch.equal(returned, scores)
    # top 1: item 1 (seen) and item 5 (not): 1 of 2 slots; top 3: {1, 3} and {4, 3}: 4 of 6
    assert counter.shares() == {"seen_share@1": 0.5, "seen_share@3": 4 / 6}


def test_seen_share_pools_several_processes_counts():
    counter = SeenShare(StubMask({0: [1]}), topk=[1, 3])
    pooled = counter.shares([(torch.tensor([1, 2]), 2), (torch.tensor([0, 1]), 3)])
    assert pooled == {"seen_share@1": 1 / 5, "seen_share@3": 3 / 15}
