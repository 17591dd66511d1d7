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

    def apply(self, interaction, scores):
        users = interaction[self.uid_field].to(self.indptr.device)
        rows, items = csr_rows(self.indptr, self.items, users)
        scores[rows.to(scores.device), items.to(scores.device)] = -np.inf
        if self.item_seq_field in interaction.interaction:
            scores.scatter_(1, interaction[self.item_seq_field].to(scores.device), -np.inf)  # column 0 is -inf anyway
        return scores


@contextlib.contextmanager
def seen_items_removed(trainer, mask):
    """Within the context, ``trainer``'s full-ranking evaluation removes the items ``mask``
    (a :class:`SeenItemMask`, built once per run) says each row has seen; ``None``: unchanged."""
    if mask is None:
        yield
        return
    full_sort_batch_eval = trainer._full_sort_batch_eval

    def masked_full_sort_batch_eval(batched_data):
        interaction, scores, positive_u, positive_i = full_sort_batch_eval(batched_data)
        return interaction, mask.apply(interaction, scores), positive_u, positive_i

    saved = trainer.__dict__.get("_full_sort_batch_eval")
    trainer._full_sort_batch_eval = masked_full_sort_batch_eval
    try:
        yield
    finally:
        if saved is None:
            del trainer._full_sort_batch_eval  # back to the class's method
        else:
            trainer._full_sort_batch_eval = saved


PROTOCOL_NAMES = {False: "history_kept", True: "history_removed"}
