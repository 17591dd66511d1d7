"""SIDDecoder: one-pass generative training over semantic IDs, constrained beam search."""

import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import prepare_tiny
from test_tiger import assert_beam_scores_are_exact
from recbole_usr.model.sequential_recommender.sid_decoder import SIDDecoder, SIDDecoderTrainer

# 12 items: 2 RQ levels of 4 codes + de-duplication; k-means codes only (as SMALL_TIGER).
SMALL_SID_DECODER = {
    "hidden_size": 32, "n_heads": 2, "n_layers": 1, "inner_size": 64, "semantic_dim": 8, "rq_hidden_sizes": [16],
    "rq_levels": 2, "rq_codebook_size": 4, "rq_pretrain_epochs": 0, "beam_size": 10, "train_batch_size": 32,
    "eval_batch_size": 64, "learning_rate": 0.005, "show_progress": False, "state": "WARNING", "epochs": 1,
}


def build(tiny_dataset, **overrides):
    config, _, train_data, valid_data, test_data = prepare_tiny(tiny_dataset, "SIDDecoder",
                                                                {**SMALL_SID_DECODER, **overrides})
    return config, SIDDecoder(config, train_data._dataset), train_data, valid_data, test_data


@pytest.fixture
def tiny_decoder(shared_encoder, tiny_dataset):
    return build(tiny_dataset)


def test_one_pass_loss_equals_the_mean_of_the_per_prefix_losses(tiny_decoder):
    """A sequence (a, b, c, d) trained in one row = the prefixes a->b, ab->c, abc->d trained apart."""
    _, model, *_ = tiny_decoder
    model.eval()  # no dropout: the two computations must agree exactly
    seq, length, target = torch.tensor([[3, 5, 2, 0]]), torch.tensor([3]), torch.tensor([7])
    one_pass = model.calculate_loss(Interaction({"item_id_list": seq, "item_length": length, "item_id": target}))
    model.whole_sequence = False  # RecBole's prefixes: only each row's last position counts
    prefixes = Interaction({
        "item_id_list": torch.tensor([[3, 0, 0, 0], [3, 5, 0, 0], [3, 5, 2, 0]]),
        "item_length": torch.tensor([1, 2, 3]), "item_id": torch.tensor([5, 2, 7])})
    per_prefix = model.calculate_loss(prefixes)  # the mean over the 3 rows' tokens
    assert torch.allclose(one_pass, per_prefix, atol=1e-6)
    # and by hand: the mean of the three rows' mean token cross-entropies
    singles = [model.calculate_loss(prefixes[[i]]) for i in range(3)]
    assert torch.allclose(one_pass, torch.stack(singles).mean(), atol=1e-6)


def test_beam_search_returns_only_real_items_scored_by_their_path_probability(tiny_decoder):
    _, model, _, _, test_data = tiny_decoder
    model.eval()
    interaction = next(iter(test_data))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        beam = model.beam_search(interaction["item_id_list"], interaction["item_length"])
    assert ((beam.items >= 1) & (beam.items < model.n_items)).all()  # real items, never padding or -1
    assert torch.equal(model.item_codes[beam.items], beam.codes)  # each generated path is that item's ID
    finite = torch.isfinite(scores)
    assert (finite.sum(dim=1) == model.beam_size).all() and not finite[:, 0].any()
    assert_beam_scores_are_exact(model, interaction, scores, beam)


def test_path_probabilities_over_the_catalogue_sum_to_at_most_one(tiny_decoder):
    """Every item is one path: P over all items <= 1 (= 1 minus the mass on paths that are no item)."""
    _, model, *_ = tiny_decoder
    model.eval()
    items = torch.arange(1, model.n_items)
    with torch.no_grad():
        hidden = model.forward(torch.tensor([[3, 5, 2]]), torch.tensor([3]))
        total = model.path_log_prob(hidden.expand(len(items), -1), items).exp().sum()
    assert 0 < total <= 1 + 1e-5


def test_training_lowers_the_loss(shared_encoder, tiny_dataset):
    config, model, train_data, valid_data, _ = build(tiny_dataset, epochs=15, eval_step=0)
    batch = next(iter(train_data))

    def loss():
        model.eval()
        with torch.no_grad():
            return float(model.calculate_loss(batch))

    before = loss()
    SIDDecoderTrainer(config, model).fit(train_data, valid_data, saved=False)
    assert loss() < 0.7 * before


def test_beam_size_below_topk_is_an_error(shared_encoder, tiny_dataset):
    with pytest.raises(ValueError, match="beam_size=5 is smaller than the largest topk"):
        build(tiny_dataset, beam_size=5, topk=[5, 10])
