"""The "seen items removed" full-ranking protocol (property ``filter_seen_items``).

RecBole ranks every item, the user's own history included; RecTools (``filter_viewed``)
and with it the eSASRec benchmark remove the items a user has already interacted with
before ranking. Published numbers differ by protocol, so the plugin reports both: this
module masks, for each evaluation row, the user's training items and the items of the
row's own input sequence (for a test row that adds the validation item). A target that is
itself in the history then counts as a miss, as under ``filter_viewed``.

Sampled protocols (uniN, popN) already draw candidates outside the user's items, so only
full ranking is affected.
"""

import contextlib

import numpy as np
import torch

from recbole_usr.data.user_history import csr_rows, training_user_items


class SeenItemMask:
    """Sets the scores of each row's seen items to ``-inf``."""

    def __init__(self, train_dataset, device="cpu"):
        indptr, items = training_user_items(train_dataset)
        self.indptr, self.items = indptr.to(device), items.to(device)
        self.uid_field = train_dataset.uid_field
        self.item_seq_field = train_dataset.iid_field + train_dataset.config["LIST_SUFFIX"]

    def seen_pairs(self, interaction, device):
        """``(row, item)`` of every seen item of each row, as two flat tensors on ``device``
        (an item may appear twice; padding 0 may appear: it is never ranked)."""
        users = interaction[self.uid_field].to(self.indptr.device)
        rows, items = csr_rows(self.indptr, self.items, users)
        rows, items = rows.to(device), items.to(device)
        if self.item_seq_field in interaction.interaction:
            sequences = interaction[self.item_seq_field].to(device)
            seq_rows = torch.arange(len(sequences), device=device).repeat_interleave(sequences.shape[1])
            rows, items = torch.cat([rows, seq_rows]), torch.cat([items, sequences.reshape(-1)])
        return rows, items

    def apply(self, interaction, scores):
        rows, items = self.seen_pairs(interaction, scores.device)
        scores[rows, items] = -np.inf
        return scores


@contextlib.contextmanager
def full_sort_scores_transformed(trainer, transform):
    """Within the context, ``trainer``'s full-ranking evaluation passes each batch's
    ``(interaction, scores)`` through ``transform``, which returns the scores to rank."""
    full_sort_batch_eval = trainer._full_sort_batch_eval

    def transformed_full_sort_batch_eval(batched_data):
        interaction, scores, positive_u, positive_i = full_sort_batch_eval(batched_data)
        return interaction, transform(interaction, scores), positive_u, positive_i

    saved = trainer.__dict__.get("_full_sort_batch_eval")
    trainer._full_sort_batch_eval = transformed_full_sort_batch_eval
    try:
        yield
    finally:
        if saved is None:
            del trainer._full_sort_batch_eval  # back to the class's method
        else:
            trainer._full_sort_batch_eval = saved


@contextlib.contextmanager
def seen_items_removed(trainer, mask):
    """Within the context, ``trainer``'s full-ranking evaluation removes the items ``mask``
    (a :class:`SeenItemMask`, built once per run) says each row has seen; ``None``: unchanged."""
    if mask is None:
        yield
        return
    with full_sort_scores_transformed(trainer, mask.apply):
        yield


class SeenShare:
    """How much of each top-k list, with seen items kept, is the user's own history.

    The two protocols differ exactly by these items: a model that ranks history high loses
    under RecBole's protocol what it does not lose once they are removed. ``count`` is a
    score transform for :func:`full_sort_scores_transformed` that leaves the scores as they are.
    """

    def __init__(self, mask, topk):
        self.mask, self.topk = mask, sorted(int(k) for k in topk)
        self.seen = torch.zeros(len(self.topk), dtype=torch.long)
        self.rows = 0

    def count(self, interaction, scores):
        top = scores.topk(self.topk[-1], dim=1).indices
        rows, items = self.mask.seen_pairs(interaction, scores.device)
        width = scores.shape[1]  # (row, item) -> one key, so no copy of the score matrix is needed
        top_keys = torch.arange(len(scores), device=scores.device)[:, None] * width + top
        seen = torch.isin(top_keys, rows * width + items) & ~torch.isinf(scores.gather(1, top))  # padding: -inf
        self.seen += torch.stack([seen[:, :k].sum() for k in self.topk]).cpu()
        self.rows += len(scores)
        return scores

    def shares(self, counts=None):
        """``{"seen_share@k": mean share of seen items in the top k}``; ``counts``: several
        processes' ``(seen, rows)`` to pool (default: this one's)."""
        counts = counts or [(self.seen, self.rows)]
        seen, rows = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return {f"seen_share@{k}": float(seen[i]) / (rows * k) if rows else float("nan")
                for i, k in enumerate(self.topk)}


PROTOCOL_NAMES = {False: "history_kept", True: "history_removed"}


def own_protocol(config):
    """The protocol a run selects on and reports as its ``test_result`` (``filter_seen_items``)."""
    return PROTOCOL_NAMES[bool(config["filter_seen_items"])]
