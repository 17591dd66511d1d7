"""Train on whole sequences instead of on every prefix.

RecBole's ``SequentialDataset`` turns a user with n training items into n-1 rows, one per
prefix, each padded to ``MAX_ITEM_LIST_LENGTH``. A causal transformer computes every
prefix's output in one pass over the longest prefix, so one row per user (per window of
``MAX_ITEM_LIST_LENGTH`` targets for long histories) carries the same training signal at
a fraction of the cost; the model then takes its loss at every real position.

Only the training split changes: validation and test rows stay RecBole's, so RecBole's
evaluator sees exactly what it sees for every other model.
"""

import numpy as np
from recbole.data.dataset import SequentialDataset


def whole_sequence_row_indices(user_ids, max_len):
    """Rows to keep: per user, the last prefix and every ``max_len``-th prefix before it.

    ``user_ids`` lists each training row's user, a user's rows contiguous and in time order
    (as RecBole's augmentation and leave-one-out split leave them). Prefix k of m (0-based)
    is kept when ``(m - 1 - k) % max_len == 0``: the kept rows' windows then cover every
    training target exactly once.
    """
    user_ids = np.asarray(user_ids)
    if len(user_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    sizes = np.diff(np.r_[starts, len(user_ids)])
    if len(np.unique(user_ids[starts])) != len(starts):
        raise ValueError("Training rows of a user are not contiguous; cannot build whole sequences.")
    position = np.arange(len(user_ids)) - np.repeat(starts, sizes)
    remaining = np.repeat(sizes, sizes) - 1 - position
    return np.flatnonzero(remaining % max_len == 0)


class WholeSequenceDataset(SequentialDataset):
    """``SequentialDataset`` whose training split keeps whole sequences (``train_whole_sequence``)."""

    def build(self):
        datasets = super().build()
        if self.config["train_whole_sequence"] and self.config["eval_args"]["split"].get("LS"):
            train = datasets[0]
            keep = whole_sequence_row_indices(
                train.inter_feat[self.uid_field].numpy(), self.config["MAX_ITEM_LIST_LENGTH"]
            )
            self.logger.info(
                f"Whole-sequence training: {len(keep)} rows instead of {len(train)} prefixes"
            )
            datasets[0] = train.copy(train.inter_feat[keep])
        return datasets
