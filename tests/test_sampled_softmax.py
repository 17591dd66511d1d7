"""Sampled softmax (loss_type SS) and the seen-items-removed evaluation protocol."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from conftest import prepare_tiny
from recbole_usr.data.user_history import csr_rows, item_user_counts, training_user_items
from recbole_usr.evaluation.seen_items import SeenItemMask
from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec

SMALL_ID_SS = {
    "item_repr": "id",
    "hidden_size": 8,
    "n_layers": 1,
    "n_heads": 1,
    "inner_size": 16,
    "loss_type": "SS",
    "train_neg_num": 4,
    "train_batch_size": 16,
    "eval_batch_size": 64,
    "show_progress": False,
    "state": "WARNING",
    "epochs": 1,
}


def build(tiny_dataset, **overrides):
    config, dataset, train_data, valid_data, test_data = prepare_tiny(tiny_dataset, "UnifiedSASRec", {**SMALL_ID_SS, **overrides})
    return config, UnifiedSASRec(config, train_data._dataset), train_data, test_data


def first_and_last_loss(model, batch, steps=30):
    """The SS loss on ``batch`` before and after ``steps`` Adam steps on it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    torch.manual_seed(0)
    first = model.calculate_loss(batch)[0].item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)[0]
        loss.backward()
        optimizer.step()
    return first, loss.item()


def test_sampled_softmax_logits_match_a_hand_computed_table(tiny_dataset):
    _, model, *_ = build(tiny_dataset)
    # 5 items in 2-d (row 0 padding); one sequence of two positions.
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    output = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])  # [B=1, L=2, H=2]
    targets = torch.tensor([[2, 4]])
    negatives = torch.tensor([[1, 4, 3]])  # item 4 is position 1's own target
    logits = model.sampled_softmax_logits(output, targets, table, negatives)
    # position 0: target 2 -> 2; negatives 1, 4, 3 -> 1, 2, 3
    # position 1: target 4 -> 6; negatives 1 -> 3, 4 -> masked, 3 -> 2
    expected = torch.tensor([[[2.0, 1.0, 2.0, 3.0], [6.0, 3.0, -math.inf, 2.0]]])
    assert torch.equal(logits, expected)
    loss = F.cross_entropy(logits.view(-1, 4), torch.zeros(2, dtype=torch.long))
    by_hand = (-(2 - math.log(math.exp(2) + math.exp(1) + math.exp(2) + math.exp(3)))
               - (6 - math.log(math.exp(6) + math.exp(3) + math.exp(2)))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_popularity_sampling_subtracts_log_q(tiny_dataset):
    _, model, train_data, _ = build(tiny_dataset, train_neg_sampling="popularity")
    counts = item_user_counts(train_data._dataset).float()
    assert model.log_q[1:].exp().sum().item() == pytest.approx(1.0, rel=1e-5)
    table = torch.randn(model.n_items, 8)
    output = torch.randn(1, 1, 8)
    targets, negatives = torch.tensor([[1]]), torch.tensor([[2, 3]])
    logits = model.sampled_softmax_logits(output, targets, table, negatives)
    q = counts.clamp(min=1) / counts.clamp(min=1)[1:].sum()
    raw = output[0, 0] @ table[[1, 2, 3]].t()
    assert torch.allclose(logits[0, 0], raw - q[[1, 2, 3]].log(), atol=1e-5)


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_sampled_negatives_are_never_held_out_items_or_padding(tiny_dataset, sampling):
    _, model, train_data, _ = build(tiny_dataset, cold_item_ratio=0.25, train_neg_num=500, train_neg_sampling=sampling)
    cold = set(np.asarray(train_data._dataset.cold_items).tolist())
    assert cold  # the split held some items out
    drawn = set(model.sample_negatives(20).flatten().tolist())
    assert not drawn & (cold | {0})
    assert drawn == set(range(1, model.n_items)) - cold  # and every training item can be drawn


def test_ss_training_lowers_loss(tiny_dataset):
    _, model, train_data, _ = build(tiny_dataset, train_neg_num=8)
    first, last = first_and_last_loss(model, next(iter(train_data)))
    assert last < 0.5 * first


def test_user_items_csr_round_trip(tiny_dataset):
    _, _, train_data, _ = build(tiny_dataset)
    dataset = train_data._dataset
    indptr, items = training_user_items(dataset)
    feat = dataset.inter_feat
    for row in range(len(feat)):
        user = int(feat["user_id"][row])
        expected = {int(i) for i in feat["item_id_list"][row] if i > 0} | {int(feat["item_id"][row])}
        assert expected <= set(items[indptr[user]:indptr[user + 1]].tolist())
    rows, got = csr_rows(indptr, items, torch.tensor([3, 1]))
    assert got[rows == 0].tolist() == items[indptr[3]:indptr[4]].tolist()
    assert got[rows == 1].tolist() == items[indptr[1]:indptr[2]].tolist()


def test_seen_item_mask_removes_training_and_input_items_only(tiny_dataset):
    _, _, train_data, test_data = build(tiny_dataset)
    dataset = train_data._dataset
    indptr, items = training_user_items(dataset)
    mask = SeenItemMask(dataset)
    user = 5
    seq = torch.zeros(1, 50, dtype=torch.long)
    seq[0, :2] = torch.tensor([7, 9])
    interaction = Interaction({"user_id": torch.tensor([user]), "item_id_list": seq})
    scores = mask.apply(interaction, torch.zeros(1, dataset.item_num))
    removed = set(torch.nonzero(torch.isinf(scores[0])).flatten().tolist())
    assert removed == set(items[indptr[user]:indptr[user + 1]].tolist()) | {7, 9, 0}


def test_per_position_negatives_give_the_shared_logits_when_draws_coincide(tiny_dataset):
    _, model, *_ = build(tiny_dataset)
    table = torch.randn(model.n_items, 8)
    output = torch.randn(2, 3, 8)
    targets = torch.tensor([[1, 2, 3], [4, 5, 6]])
    negatives = torch.tensor([[2, 7], [8, 4]])
    shared = model.sampled_softmax_logits(output, targets, table, negatives)  # [2, 3, 3]
    per_position = model.sampled_softmax_logits(
        output.reshape(6, 8), targets.reshape(6), table, negatives.repeat_interleave(3, dim=0)
    )
    assert torch.allclose(shared.reshape(6, 3), per_position, atol=1e-6)
    assert torch.isinf(per_position[1, 1]) and torch.isinf(per_position[3, 2])  # target == negative


def test_ss_with_per_position_negatives_trains(tiny_dataset):
    _, model, train_data, _ = build(tiny_dataset, train_neg_num=8, train_neg_share="position")
    first, last = first_and_last_loss(model, next(iter(train_data)))
    assert last < 0.5 * first


def test_item_embedding_dropout_drops_table_entries_in_training_only(tiny_dataset):
    _, model, *_ = build(tiny_dataset, item_emb_dropout_prob=0.5)
    weights = model.item_repr.embedding.weight.detach()
    model.train()
    torch.manual_seed(0)
    dropped, _ = model.item_table()
    kept = dropped != 0
    assert 0 < kept[1:].float().mean() < 1  # some entries zeroed, not all
    assert torch.equal(dropped[0], torch.zeros_like(dropped[0]))  # padding stays zero
    assert torch.allclose(dropped[kept], 2 * weights[kept])  # survivors scaled by 1 / (1 - p)
    model.eval()
    assert torch.equal(model.item_table()[0], weights)  # evaluation sees the whole table


def test_item_embedding_dropout_must_be_a_probability(tiny_dataset):
    with pytest.raises(ValueError, match="item_emb_dropout_prob"):
        build(tiny_dataset, item_emb_dropout_prob=1.0)
