"""Recall@K / NDCG@K per slice of the target item: head / torso / tail by training popularity, and cold.

Slices partition the items by their number of *training* interactions:

- ``cold``: items with no training interaction (held out by ``cold_item_ratio``, or seen
  only in validation / test);
- ``head`` / ``torso`` / ``tail`` among the other ("warm") items, by ``popularity_slices``
  ``[a, b]`` (default ``[0.2, 0.8]``): with warm items ranked by count, most popular first,
  an item whose rank fraction (items strictly more popular / warm items) is below ``a`` is
  head, below ``b`` torso, else tail. Items with equal counts share a slice (the one of
  the first of them).

A test row belongs to the slice of its target (the user's held-out item). The metrics are
RecBole's for full ranking with one target per row, computed from the same scores as
:class:`recbole.trainer.Trainer` (``full_sort_predict``, padding and history set to -inf,
``torch.topk``): Recall@K = Hit@K, NDCG@K = 1 / log2(rank + 1) when rank <= K, else 0.
Over all rows they equal RecBole's evaluator (up to its rounding), which the tests check.
"""

import math

import numpy as np
import torch

from recbole_usr.data.whole_sequence import WholeSequenceDataset

DEFAULT_POPULARITY_SLICES = (0.2, 0.8)
SLICE_NAMES = ("head", "torso", "tail", "cold")


def is_whole_sequence_split(train_dataset):
    """True when ``train_dataset``'s rows are whole sequences (UnifiedSASRec), not prefixes."""
    config = train_dataset.config
    split = config["eval_args"]["split"]
    return (
        isinstance(train_dataset, WholeSequenceDataset)
        and bool(config["train_whole_sequence"])
        and isinstance(split, dict)
        and bool(split.get("LS"))
    )


def training_item_counts(train_dataset):
    """``[item_num]`` int64: training interactions of each item (row 0 = 0).

    Counts every interaction of the training split once, whatever the row format: with
    RecBole's prefixes, each interaction but a user's first is one row's target; with
    whole-sequence rows (:mod:`recbole_usr.data.whole_sequence`), each is a target at one
    position of exactly one row. A user's first interaction opens the history of the
    user's first row in both formats. Rows of a user must be contiguous (RecBole's split).
    """
    feat = train_dataset.inter_feat
    n_items = train_dataset.item_num
    counts = np.zeros(n_items, dtype=np.int64)
    if len(feat) == 0:
        return counts
    users = feat[train_dataset.uid_field].numpy()
    targets = feat[train_dataset.iid_field].numpy()
    history = feat[train_dataset.item_id_list_field].numpy()
    lengths = feat[train_dataset.item_list_length_field].numpy()
    counts += np.bincount(targets, minlength=n_items)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    first = history[starts[lengths[starts] > 0], 0]
    counts += np.bincount(first, minlength=n_items)
    if is_whole_sequence_split(train_dataset):
        inner = np.arange(history.shape[1])[None, :]
        inside = (inner >= 1) & (inner < lengths[:, None])  # positions 1..len-1 are targets too
        counts += np.bincount(history[inside], minlength=n_items)
    counts[0] = 0
    return counts


def popularity_slices(counts, thresholds=DEFAULT_POPULARITY_SLICES):
    """``{name: bool [item_num]}`` for head, torso, tail and cold (padding in none)."""
    low, high = (float(t) for t in thresholds)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"popularity_slices must be two fractions a <= b in [0, 1], got {thresholds}.")
    counts = np.asarray(counts)
    real = np.arange(len(counts)) > 0
    warm = real & (counts > 0)
    warm_counts = np.sort(counts[warm])
    # items strictly more popular than each item, as a fraction of the warm items
    more_popular = len(warm_counts) - np.searchsorted(warm_counts, counts, side="right")
    fraction = more_popular / max(len(warm_counts), 1)
    return {
        "head": warm & (fraction < low),
        "torso": warm & (fraction >= low) & (fraction < high),
        "tail": warm & (fraction >= high),
        "cold": real & (counts == 0),
    }


def _as_mask_list(seen_mask):
    """``(masks, one)``: ``seen_mask`` as a list, and whether the caller passed a single one."""
    if isinstance(seen_mask, (list, tuple)):
        if not seen_mask:
            raise ValueError("seen_mask: give a mask, None, or a non-empty list of them.")
        return list(seen_mask), False
    return [seen_mask], True


@torch.no_grad()
def target_ranks(model, eval_data, max_k, seen_mask=None):
    """``(targets [R], ranks [R])`` over the rows of a full-sort ``eval_data``.

    ``rank`` is the target's 1-based position among RecBole's top ``max_k`` (0 when not
    there), from the scores RecBole's trainer would compute; with ``seen_mask`` (a
    :class:`~recbole_usr.evaluation.seen_items.SeenItemMask`) each row's seen items are
    removed first, the eSASRec benchmark's protocol. A list of masks (``None`` = seen items
    kept) scores every row once and ranks it under each: ``(targets, [ranks per mask])``.
    """
    masks, one = _as_mask_list(seen_mask)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_items = eval_data._dataset.item_num
    all_targets, all_ranks = [], [[] for _ in masks]
    try:
        for interaction, history_index, positive_u, positive_i in eval_data:
            scores = model.full_sort_predict(interaction.to(device)).view(-1, n_items)
            scores[:, 0] = -np.inf
            if history_index is not None:
                scores[history_index] = -np.inf
            if len(positive_u) != scores.shape[0] or not torch.equal(
                positive_u.cpu(), torch.arange(scores.shape[0])
            ):
                raise ValueError("Slice metrics need one target per row (sequential leave-one-out data).")
            positive_i = positive_i.to(scores.device)
            for position, (mask, ranks_of_mask) in enumerate(zip(masks, all_ranks)):
                if mask is None:
                    masked = scores
                else:  # a mask writes -inf in place: only the last ranking may take the scores themselves
                    masked = mask.apply(interaction, scores if position == len(masks) - 1 else scores.clone())
                top = torch.topk(masked, min(max_k, n_items), dim=-1).indices
                match = top == positive_i[:, None]
                ranks = torch.where(match.any(dim=1), match.int().argmax(dim=1) + 1, torch.zeros_like(positive_i))
                ranks_of_mask.append(ranks.cpu())
            all_targets.append(positive_i.cpu())
    finally:
        model.train(was_training)
    if not all_targets:
        empty = np.zeros(0, dtype=np.int64)
        return (empty, empty) if one else (empty, [empty for _ in masks])
    ranks = [torch.cat(r).numpy() for r in all_ranks]
    return torch.cat(all_targets).numpy(), ranks[0] if one else ranks


def metrics_from_ranks(ranks, topk):
    """RecBole's Recall@K and NDCG@K for one target per row, averaged over ``ranks``."""
    result = {"n_targets": int(len(ranks))}
    for k in topk:
        hit = (ranks >= 1) & (ranks <= k)
        gain = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
        result[f"recall@{k}"] = float(hit.mean()) if len(ranks) else None
        result[f"ndcg@{k}"] = float(gain.mean()) if len(ranks) else None
    return result


def slice_metrics(model, eval_data, slices, topk=(10,), seen_mask=None):
    """``{"overall": metrics, <slice>: metrics}`` with metrics from :func:`metrics_from_ranks`.

    ``slices`` maps a name to a bool mask over item ids; a row counts in a slice when its
    target is in the mask. Each entry also gives ``n_items`` (items in the slice).
    ``seen_mask``: rank with each row's seen items removed (:func:`target_ranks`); a list of
    masks gives one such dict per mask, from one scoring pass.
    """
    masks, one = _as_mask_list(seen_mask)
    topk = sorted({int(k) for k in topk})
    targets, ranks_per_mask = target_ranks(model, eval_data, max(topk), masks)
    per_mask = []
    for ranks in ranks_per_mask:
        results = {"overall": metrics_from_ranks(ranks, topk)}
        results["overall"]["n_items"] = int(eval_data._dataset.item_num - 1)
        for name, mask in slices.items():
            mask = np.asarray(mask, dtype=bool)
            results[name] = metrics_from_ranks(ranks[mask[targets]], topk)
            results[name]["n_items"] = int(mask.sum())
        per_mask.append(results)
    return per_mask[0] if one else per_mask


def evaluate_slices(model, eval_data, train_dataset, thresholds=None, topk=None, seen_mask=None):
    """Overall and head / torso / tail / cold metrics of ``model`` on ``eval_data``.

    ``thresholds`` default to the ``popularity_slices`` property (else 0.2, 0.8), ``topk``
    to the ``topk`` property; popularity is counted on ``train_dataset``. ``seen_mask``: the
    same with each row's seen items removed from the ranking (:func:`target_ranks`);
    ``[None, mask]`` gives both protocols, in that order, from one scoring pass.
    """
    config = train_dataset.config
    if thresholds is None:
        thresholds = config["popularity_slices"] or DEFAULT_POPULARITY_SLICES
    if topk is None:
        topk = config["topk"] or [10]
    topk = [topk] if isinstance(topk, int) else topk
    slices = popularity_slices(training_item_counts(train_dataset), thresholds)
    return slice_metrics(model, eval_data, slices, topk, seen_mask)


def format_slice_table(rows, k=10):
    """Markdown: one row per ``(name, parameter count, slice results)``; a metric with a
    ``<metric>_sd`` entry beside it (a mean over seeds) is shown as mean ± sd."""
    header = ["representation", "item params"]
    for name in ("overall",) + SLICE_NAMES:
        header += [f"{name} R@{k}", f"{name} N@{k}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, params, results in rows:
        cells = [name, f"{params:,}" if params is not None else "-"]
        for slice_name in ("overall",) + SLICE_NAMES:
            entry = results.get(slice_name, {})
            for metric in (f"recall@{k}", f"ndcg@{k}"):
                value, sd = entry.get(metric), entry.get(f"{metric}_sd")
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    cells.append("-")
                else:
                    cells.append(f"{value:.4f}" + (f" ± {sd:.4f}" if sd is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
