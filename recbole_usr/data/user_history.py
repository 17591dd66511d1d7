"""Which items each user has already interacted with in the training split.

Two consumers: the "seen items removed" evaluation protocol (RecTools' ``filter_viewed``,
used by the eSASRec benchmark), and popularity negative sampling (items weighted by how
many users have them). RecBole's sequential training rows are prefixes or whole sequences;
either way a row's ``item_id_list`` plus its target covers that user's training items, so
the union over rows is exact whatever the augmentation.
"""

import numpy as np
import torch


def training_user_items(dataset):
    """``(indptr [n_users + 1], items)``: user ``u``'s distinct training items are
    ``items[indptr[u]:indptr[u + 1]]`` (a CSR row; padding 0 never included)."""
    feat = dataset.inter_feat
    uid, iid = dataset.uid_field, dataset.iid_field
    list_field = iid + dataset.config["LIST_SUFFIX"]
    users = feat[uid].numpy().astype(np.int64)
    parts_user, parts_item = [users], [feat[iid].numpy().astype(np.int64)]
    if list_field in feat.interaction:
        lists = feat[list_field].numpy().astype(np.int64)
        parts_user.append(np.repeat(users, lists.shape[1]))
        parts_item.append(lists.reshape(-1))
    pair_users, pair_items = np.concatenate(parts_user), np.concatenate(parts_item)
    real = pair_items > 0
    pairs = np.unique(pair_users[real] * dataset.item_num + pair_items[real])
    pair_users, pair_items = pairs // dataset.item_num, pairs % dataset.item_num
    indptr = np.zeros(dataset.user_num + 1, dtype=np.int64)
    np.add.at(indptr, pair_users + 1, 1)
    return torch.from_numpy(np.cumsum(indptr)), torch.from_numpy(pair_items)


def item_user_counts(dataset):
    """``[item_num]`` how many training users have each item (0 for padding and held-out items)."""
    _, items = training_user_items(dataset)
    return torch.bincount(items, minlength=dataset.item_num)


def csr_rows(indptr, items, rows):
    """``(row position, item)`` pairs of the CSR rows ``rows``, as two flat tensors."""
    starts, ends = indptr[rows], indptr[rows + 1]
    counts = ends - starts
    position = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
    offsets = torch.arange(int(counts.sum()), device=rows.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    return position, items[torch.repeat_interleave(starts, counts) + offsets]
