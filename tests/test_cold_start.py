"""Cold-item split (held-out items never trained on) and per-slice Recall/NDCG."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import N_USERS, SMALL_SASREC, prepare_tiny, tiny_interactions
from recbole_usr.data.cold_start import (
    ColdItemSequentialDataset,
    ColdItemWholeSequenceDataset,
    cold_keep_mask,
    draw_cold_items,
)
from recbole_usr.evaluation import (
    evaluate_slices,
    metrics_from_ranks,
    popularity_slices,
    slice_metrics,
    training_item_counts,
)
from recbole_usr.evaluation.seen_items import SeenItemMask, seen_items_removed
from recbole_usr.utils import get_model, get_trainer

UNIFIED_ID = {**SMALL_SASREC, "item_repr": "id", "n_heads": 2, "train_batch_size": 8}
MODELS = [("SASRec", {**SMALL_SASREC, "train_batch_size": 8}), ("UnifiedSASRec", UNIFIED_ID)]


def prepare(tiny_dataset, model="SASRec", **overrides):
    return prepare_tiny(tiny_dataset, model, {**dict(MODELS)[model], **overrides})


def test_keep_mask_drops_cold_interactions_except_evaluation_targets():
    users = ["a"] * 6 + ["b"] * 4
    items = [1, 2, 3, 4, 2, 3] + [2, 5, 6, 2]
    is_cold = np.zeros(7, dtype=bool)
    is_cold[2] = True
    keep = cold_keep_mask(users, items, is_cold, n_eval=2)
    # a: drop the early 2, keep the valid target 2; b: dropping its first 2 leaves 3 < 2 + 2
    # interactions, too few for two evaluation rows, so its last 2 goes as well
    assert keep.tolist() == [True, False, True, True, True, True] + [False, True, True, False]
    assert cold_keep_mask(users, items, is_cold, n_eval=1).tolist() == [True, False, True, True, False, True] + [
        False, True, True, True]


def test_cold_items_are_drawn_by_seed_and_never_padding():
    first = draw_cold_items(101, 0.1, seed=7)
    assert len(first) == 10 and 0 not in first and np.all(np.diff(first) > 0)
    assert np.array_equal(first, draw_cold_items(101, 0.1, seed=7))
    assert not np.array_equal(first, draw_cold_items(101, 0.1, seed=8))
    assert len(draw_cold_items(101, 0.0, seed=7)) == 0


@pytest.mark.parametrize("model", ["SASRec", "UnifiedSASRec"])
def test_cold_items_are_absent_from_every_training_batch(tiny_dataset, model):
    _, dataset, train_data, valid_data, test_data = prepare(tiny_dataset, model, cold_item_ratio=0.25)
    expected = ColdItemSequentialDataset if model == "SASRec" else ColdItemWholeSequenceDataset
    assert type(dataset) is expected
    cold = dataset.cold_items
    assert len(cold) == 3  # 25% of 12 items
    n_batches = 0
    for batch in train_data:
        n_batches += 1
        assert not np.isin(batch["item_id"].numpy(), cold).any()
        assert not np.isin(batch["item_id_list"].numpy(), cold).any()
    assert n_batches > 1
    # evaluation targets are those of the plain split, cold ones included
    _, _, _, plain_valid, plain_test = prepare(tiny_dataset, model)
    for split, plain in ((test_data, plain_test), (valid_data, plain_valid)):
        pairs = set(zip(split._dataset.inter_feat["user_id"].tolist(), split._dataset.inter_feat["item_id"].tolist()))
        plain_pairs = set(zip(plain._dataset.inter_feat["user_id"].tolist(), plain._dataset.inter_feat["item_id"].tolist()))
        assert pairs <= plain_pairs
    test_targets = test_data._dataset.inter_feat["item_id"].numpy()
    assert len(test_targets) == N_USERS and np.isin(test_targets, cold).sum() > 0


def test_id_model_still_trains_and_ranks_cold_items(tiny_dataset):
    config, dataset, train_data, valid_data, test_data = prepare(tiny_dataset, "SASRec", cold_item_ratio=0.25)
    model = get_model("SASRec")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    result = trainer.evaluate(test_data, load_best_model=False)
    assert 0.0 <= result["ndcg@10"] <= 1.0
    # the ID table keeps a row for every item: cold items get finite scores, like any other
    scores = model.full_sort_predict(next(iter(test_data))[0])
    assert scores.shape[1] == dataset.item_num and torch.isfinite(scores[:, dataset.cold_items]).all()


@pytest.mark.parametrize("loss_type", ["CE", "BCE"])
def test_held_out_items_are_no_training_candidates(tiny_dataset, loss_type):
    # their ID rows get no gradient at all (not even as negatives) unless the property says so;
    # warm rows do
    rows_changed = {}
    for exclude in (True, False):
        config, dataset, train_data, _, _ = prepare(tiny_dataset, "UnifiedSASRec", cold_item_ratio=0.25,
                                                    loss_type=loss_type, train_exclude_cold_items=exclude)
        model = get_model("UnifiedSASRec")(config, train_data._dataset)
        table = model.item_repr.embedding.weight
        before = table.detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        for _ in range(3 if loss_type == "BCE" else 1):  # BCE: enough sampled negatives to reach cold rows
            for batch in train_data:
                optimizer.zero_grad()
                model.calculate_loss(batch)[0].backward()
                optimizer.step()
        changed = (table.detach() != before).any(dim=1)
        rows_changed[exclude] = changed
        warm = np.setdiff1d(np.arange(1, dataset.item_num), dataset.cold_items)
        assert changed[warm].any()
    cold = torch.as_tensor(dataset.cold_items)
    assert not rows_changed[True][cold].any()
    assert rows_changed[False][cold].all()


def plain_training_counts(tiny_dataset, train_dataset):
    """Interactions per item in the raw file minus each user's last two (valid and test)."""
    by_user = {}
    for user, item, _ in tiny_interactions():
        by_user.setdefault(user, []).append(item)
    raw = Counter(item for items in by_user.values() for item in items[:-2])
    counts = np.zeros(train_dataset.item_num, dtype=np.int64)
    for token, n in raw.items():
        counts[train_dataset.token2id("item_id", token)] = n
    return counts


def test_popularity_counts_agree_for_prefix_and_whole_sequence_rows(tiny_dataset):
    # MAX_ITEM_LIST_LENGTH 2 < 4 training items: prefixes are truncated and whole
    # sequences are cut into several windows per user
    _, _, prefix_train, _, _ = prepare(tiny_dataset, "SASRec", MAX_ITEM_LIST_LENGTH=2)
    _, _, whole_train, _, _ = prepare(tiny_dataset, "UnifiedSASRec", MAX_ITEM_LIST_LENGTH=2)
    assert len(whole_train._dataset) < len(prefix_train._dataset)
    expected = plain_training_counts(tiny_dataset, prefix_train._dataset)
    assert expected.sum() == N_USERS * 4
    assert np.array_equal(training_item_counts(prefix_train._dataset), expected)
    assert np.array_equal(training_item_counts(whole_train._dataset), expected)


def test_popularity_slices_on_hand_made_counts():
    counts = np.array([0, 50, 40, 30, 20, 10, 5, 5, 3, 1, 1, 0])  # item 0 padding, item 11 cold
    slices = popularity_slices(counts, (0.2, 0.8))
    as_ids = {name: np.flatnonzero(mask).tolist() for name, mask in slices.items()}
    # 10 warm items; fraction of warm items strictly more popular: item 2 -> 0.1 (head),
    # item 3 -> 0.2 (torso), item 8 -> 0.7 (torso), items 9 and 10 (tied) -> 0.8 (tail)
    assert as_ids == {"head": [1, 2], "torso": [3, 4, 5, 6, 7, 8], "tail": [9, 10], "cold": [11]}
    everything = np.zeros(12, dtype=bool)
    for mask in slices.values():
        assert not (everything & mask).any()  # a partition...
        everything |= mask
    assert everything.tolist() == [False] + [True] * 11  # ...of the real items


def test_metrics_from_ranks_follow_recbole_definitions():
    result = metrics_from_ranks(np.array([1, 3, 0, 2]), [1, 3])
    assert result["recall@1"] == 0.25 and result["recall@3"] == 0.75
    assert result["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 4)


def test_slice_metrics_match_recbole_overall_and_one_slice_equals_overall(tiny_dataset):
    settings = dict(topk=[1, 3], metrics=["Recall", "NDCG"], valid_metric="NDCG@3", cold_item_ratio=0.25)
    config, dataset, train_data, valid_data, test_data = prepare(tiny_dataset, "SASRec", **settings)
    model = get_model("SASRec")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    recbole_result = trainer.evaluate(test_data, load_best_model=False)

    results = evaluate_slices(model, test_data, train_data._dataset)
    for metric in ("recall@1", "recall@3", "ndcg@1", "ndcg@3"):
        assert results["overall"][metric] == pytest.approx(recbole_result[metric], abs=1e-4)
    assert sum(results[name]["n_targets"] for name in ("head", "torso", "tail", "cold")) == N_USERS
    assert results["cold"]["n_targets"] > 0 and results["cold"]["n_items"] >= 3

    mask = SeenItemMask(train_data._dataset)  # the eSASRec protocol, as the plugin's runs apply it
    with seen_items_removed(trainer, mask):
        recbole_removed = trainer.evaluate(test_data, load_best_model=False)
    removed = evaluate_slices(model, test_data, train_data._dataset, seen_mask=mask)
    for metric in ("recall@1", "recall@3", "ndcg@1", "ndcg@3"):
        assert removed["overall"][metric] == pytest.approx(recbole_removed[metric], abs=1e-4)

    one_slice = np.ones(dataset.item_num, dtype=bool)
    one_slice[0] = False
    single = slice_metrics(model, test_data, {"all": one_slice}, topk=[1, 3])
    assert single["all"] == {**single["overall"], "n_items": dataset.item_num - 1}
    assert single["overall"]["recall@3"] == results["overall"]["recall@3"]

    # both protocols from one scoring pass: the same numbers as two passes, the model scored
    # once per batch, and in either order (the mask must not leak into the other ranking)
    calls = []
    full_sort_predict = model.full_sort_predict
    model.full_sort_predict = lambda interaction: calls.append(1) or full_sort_predict(interaction)
    kept, removed_once = evaluate_slices(model, test_data, train_data._dataset, seen_mask=[None, mask])
    del model.full_sort_predict
    assert len(calls) == len(test_data)
    assert kept == results and removed_once == removed and kept != removed
    assert evaluate_slices(model, test_data, train_data._dataset, seen_mask=[mask, None]) == [removed, results]
    with pytest.raises(ValueError, match="non-empty list"):
        evaluate_slices(model, test_data, train_data._dataset, seen_mask=[])
