"""UnifiedSASRec: masking, trimming, whole-sequence loss, ablations, training, reload."""

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from conftest import prepare_tiny
from recbole_usr.data.whole_sequence import whole_sequence_row_indices
from recbole_usr.model.distinct_histories import distinct_histories
from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec
from recbole_usr.quick_start import build_config, load_data_and_model, run
from recbole_usr.trainer import SemanticIDTrainer

SMALL_UNIFIED = {
    "n_layers": 1,
    "n_heads": 2,
    "inner_size": 32,
    "id_dim": 8,
    "semantic_dim": 16,
    "rq_hidden_sizes": [32],
    "rq_levels": 2,
    "rq_distances": ["cosine", "euclidean"],
    "rq_codebook_size": 4,
    "rq_pretrain_epochs": 3,
    "train_batch_size": 16,
    "eval_batch_size": 64,
    "show_progress": False,
    "state": "WARNING",
    "epochs": 1,
}


def build(tiny_dataset, **overrides):
    config, _, train_data, valid_data, test_data = prepare_tiny(tiny_dataset, "UnifiedSASRec", {**SMALL_UNIFIED, **overrides})
    model = UnifiedSASRec(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def sequences(rows, max_len=10):
    """Left-aligned, zero-padded item sequences (RecBole's layout)."""
    seq = torch.zeros(len(rows), max_len, dtype=torch.long)
    for i, row in enumerate(rows):
        seq[i, : len(row)] = torch.tensor(row)
    return seq, torch.tensor([len(row) for row in rows])


def test_whole_sequence_rows_cover_every_target_once():
    # user a: 5 prefixes, user b: 2, user c: 7, max_len 3 -> windows end at the last prefix
    # and every 3rd before it.
    users = ["a"] * 5 + ["b"] * 2 + ["c"] * 7
    kept = whole_sequence_row_indices(users, max_len=3)
    assert kept.tolist() == [1, 4, 6, 7, 10, 13]


def test_whole_sequence_rows_reject_interleaved_users():
    with pytest.raises(ValueError):
        whole_sequence_row_indices(["a", "b", "a"], max_len=3)


def test_training_split_has_one_row_per_user(shared_encoder, tiny_dataset):
    _, _, train_data, _, _ = build(tiny_dataset)
    users = train_data._dataset.inter_feat["user_id"].numpy()
    assert len(users) == len(np.unique(users)) == 30
    # each user has 6 interactions: 4 training targets -> longest prefix has 3 items
    assert set(train_data._dataset.inter_feat["item_length"].tolist()) == {3}


def test_padding_never_changes_real_positions(shared_encoder, tiny_dataset):
    _, model, *_ = build(tiny_dataset)
    model.eval()
    table, _ = model.item_table()
    seq, lengths = sequences([[1, 2, 3], [4, 5, 6, 7, 8]])
    base = model.encode_sequence(seq, table)
    changed = seq.clone()
    changed[0, 3:5] = torch.tensor([9, 10])  # items after row 0's end (causal: invisible)
    other = model.encode_sequence(changed, table)
    assert torch.allclose(base[0, :3], other[0, :3], atol=1e-6)
    assert torch.allclose(model.forward(seq, lengths), model.forward(changed, lengths), atol=1e-6)


def test_trimmed_batch_scores_equal_untrimmed(shared_encoder, tiny_dataset):
    _, model, *_ = build(tiny_dataset)
    model.eval()
    # rows out of length order: each length bucket is trimmed on its own, then put back in place
    seq, lengths = sequences([[1, 2], [3, 4, 5, 6], [7], [2, 3, 4, 5, 6, 7, 8], [9, 1, 2]])
    interaction = Interaction({"item_id_list": seq, "item_length": lengths})
    trimmed = model.full_sort_predict(interaction)
    # reference without trimming: the backbone over all 10 padded positions
    table, _ = model.item_table()
    positions = torch.arange(seq.shape[1])
    emb = torch.nn.functional.embedding(seq, table) + model.position_embedding(positions).unsqueeze(0)
    full = model.trm_encoder(model.LayerNorm(emb), model.get_attention_mask(seq), output_all_encoded_layers=True)[-1]
    reference = model.gather_indexes(full, lengths - 1) @ table.t()
    assert torch.allclose(trimmed, reference, atol=1e-5)


def test_all_positions_loss_is_mean_of_prefix_losses(shared_encoder, tiny_dataset):
    _, model, *_ = build(tiny_dataset)
    model.eval()
    histories = [[1, 2, 3, 4], [5, 6, 7]]
    targets = [5, 8]
    whole_seq, whole_len = sequences(histories)
    whole = Interaction({"item_id_list": whole_seq, "item_length": whole_len, "item_id": torch.tensor(targets)})
    model.whole_sequence = True
    whole_loss = model.calculate_loss(whole)[0]

    prefix_losses = []
    model.whole_sequence = False
    for history, target in zip(histories, targets):
        full = history + [target]
        for end in range(1, len(full)):
            seq, length = sequences([full[:end]])
            row = Interaction({"item_id_list": seq, "item_length": length, "item_id": torch.tensor([full[end]])})
            prefix_losses.append(model.calculate_loss(row)[0])
    assert len(prefix_losses) == 7
    assert torch.allclose(whole_loss, torch.stack(prefix_losses).mean(), atol=1e-5)


def test_full_sort_agrees_with_predict(shared_encoder, tiny_dataset):
    _, model, *_ = build(tiny_dataset)
    model.eval()
    seq, lengths = sequences([[1, 2, 3], [4, 5]])
    candidates = torch.tensor([[2, 7, 9], [1, 3, 11]])
    full = model.full_sort_predict(Interaction({"item_id_list": seq, "item_length": lengths}))
    for column in range(candidates.shape[1]):
        items = candidates[:, column]
        pointwise = model.predict(Interaction({"item_id_list": seq, "item_length": lengths, "item_id": items}))
        assert torch.allclose(pointwise, full.gather(1, items.unsqueeze(1)).squeeze(1), atol=1e-5)


def test_predict_on_repeated_histories_matches_full_sort(shared_encoder, tiny_dataset):
    # RecBole's sampled evaluation layout: every history repeated once per candidate, rows of
    # different users interleaved; predict encodes each distinct history once.
    _, model, *_ = build(tiny_dataset)
    model.eval()
    seq, lengths = sequences([[1, 2, 3], [4, 5], [1, 2, 3, 6]])
    full = model.full_sort_predict(Interaction({"item_id_list": seq, "item_length": lengths}))
    users = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    items = torch.tensor([2, 7, 9, 11, 3, 1, 4, 5])
    scores = model.predict(Interaction({"item_id_list": seq[users], "item_length": lengths[users], "item_id": items}))
    assert torch.allclose(scores, full[users, items], atol=1e-5)


def test_distinct_histories_round_trip():
    seq = torch.tensor([[3, 4, 0], [1, 0, 0], [3, 4, 0], [3, 4, 5]])
    lengths = torch.tensor([2, 1, 2, 3])
    (distinct_seq, distinct_len), row_of = distinct_histories(seq, lengths)
    assert distinct_seq.shape == (3, 3) and distinct_len.shape == (3,)
    assert torch.equal(distinct_seq[row_of], seq) and torch.equal(distinct_len[row_of], lengths)


@pytest.mark.parametrize(
    "overrides, hidden, n_losses",
    [
        ({"id_dim": 0, "n_heads": 1}, 16, 3),  # semantic only
        ({"use_semantic": False}, 8, 1),  # ID only
        ({"rq_train_mode": "two_stage"}, 24, 1),  # frozen tokenizer: no quantisation losses
        ({"loss_type": "BCE"}, 24, 3),
    ],
)
def test_ablations_build_and_train(shared_encoder, tiny_dataset, overrides, hidden, n_losses):
    config, model, train_data, *_ = build(tiny_dataset, **overrides)
    assert model.hidden_size == hidden
    batch = next(iter(train_data))
    losses = model.calculate_loss(batch)
    assert len(losses) == n_losses
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    sum(losses).backward()
    optimizer.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    assert all(torch.isfinite(loss) for loss in losses)


def test_training_lowers_loss_and_raises_ndcg_on_ml100k(shared_encoder, tmp_path):
    config = build_config(
        "UnifiedSASRec",
        "ml-100k",
        config_dict={
            "epochs": 4, "show_progress": False, "state": "WARNING", "text_cache_dir": str(tmp_path),
            "rq_pretrain_epochs": 5, "train_batch_size": 128, "checkpoint_dir": str(tmp_path),
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = UnifiedSASRec(config, train_data._dataset)
    trainer = SemanticIDTrainer(config, model)
    before = trainer.evaluate(valid_data, load_best_model=False)["ndcg@10"]
    losses = [trainer._train_epoch(train_data, epoch)[0] for epoch in range(config["epochs"])]
    after = trainer.evaluate(valid_data, load_best_model=False)["ndcg@10"]
    assert losses[-1] < losses[0]
    assert after > before
    assert len(trainer.codebook_history) == config["epochs"]


def test_checkpoint_reload_gives_identical_metrics(shared_encoder, tiny_dataset, tmp_path):
    result = run(
        "UnifiedSASRec",
        tiny_dataset.name,
        config_file_list=[str(tiny_dataset.yaml_path)],
        config_dict=tiny_dataset.config_dict(**SMALL_UNIFIED, checkpoint_dir=str(tmp_path)),
    )
    config, model, _, _, _, test_data = load_data_and_model(result["model_file"])
    reloaded = SemanticIDTrainer(config, model).evaluate(test_data, load_best_model=False)
    assert dict(reloaded) == pytest.approx(result["test_result"])


@pytest.mark.parametrize("scale, codeword_grad", [(0.0, True), (1.0, False)])
def test_recommendation_gradient_reaches_what_properties_say(shared_encoder, tiny_dataset, scale, codeword_grad):
    _, model, train_data, *_ = build(tiny_dataset, rq_rec_grad_scale=scale, rq_rec_codeword_grad=codeword_grad)
    model.train()
    model.zero_grad(set_to_none=True)  # pre-training leaves the tokenizer's last gradients
    rec_loss = model.calculate_loss(next(iter(train_data)))[0]
    rec_loss.backward()
    tokenizer = model.item_repr.tokenizer
    encoder_grad = sum(float(p.grad.abs().sum()) for p in tokenizer.encoder.parameters() if p.grad is not None)
    codeword_grad_norm = sum(float(p.grad.abs().sum()) for p in tokenizer.levels.parameters() if p.grad is not None)
    assert (encoder_grad > 0) == (scale > 0)
    assert (codeword_grad_norm > 0) == codeword_grad


def test_codeword_gradient_reaches_only_the_levels_named(shared_encoder, tiny_dataset):
    _, model, train_data, *_ = build(tiny_dataset, rq_rec_codeword_grad=[True, False])
    model.train()
    model.zero_grad(set_to_none=True)
    model.calculate_loss(next(iter(train_data)))[0].backward()
    first, last = model.item_repr.tokenizer.levels
    assert float(first.codebook.grad.abs().sum()) > 0
    assert last.codebook.grad is None or float(last.codebook.grad.abs().sum()) == 0


def test_codeword_gradient_list_must_name_every_level(shared_encoder, tiny_dataset):
    with pytest.raises(ValueError, match=r"rq_rec_codeword_grad: True, False or one per level \(2\)"):
        build(tiny_dataset, rq_rec_codeword_grad=[True, True, False])


def test_a_checkpoint_without_saved_codes_still_loads(shared_encoder, tiny_dataset, caplog):
    _, model, *_ = build(tiny_dataset)
    state = model.state_dict()
    del state["item_repr.codes"]  # what checkpoints written before the codes were saved hold
    model.item_repr.codes.zero_()
    model.load_state_dict(state)
    representation = model.item_repr
    assert torch.equal(representation.codes[1:], representation.tokenizer.encode(representation.text_embeddings[1:]))
    assert any("predates saved semantic IDs" in record.getMessage() for record in caplog.records)


def far_codeword(level, index):
    """Move one Euclidean codeword far from every residual: no item selects it any more."""
    with torch.no_grad():
        level.codebook[index] = 1e4


@pytest.mark.parametrize("restarts", [False, True])
def test_end_to_end_restarts_reseed_dead_codewords_and_report_health_before_reseeding(shared_encoder, tiny_dataset,
                                                                                      restarts):
    _, model, *_ = build(tiny_dataset, rq_end_to_end_restarts=restarts)
    representation = model.item_repr
    tokenizer = representation.tokenizer
    last = tokenizer.levels[-1]  # Euclidean: a far codeword is never the nearest
    far_codeword(last, 0)
    representation.refresh_codes()
    if restarts:
        assert representation.restarted >= 1
        assert float(last.codebook[0].detach().abs().max()) < 1e3  # re-seeded from a real residual
        assert 0 in representation.codes[1:, -1].tolist()  # and some item uses it again
    else:
        assert representation.restarted is None
        assert float(last.codebook[0].detach().abs().max()) == 1e4
        assert 0 not in representation.codes[1:, -1].tolist()

    far_codeword(last, 0)  # the codeword drifts away again during the epoch
    stats = representation.epoch_statistics()
    in_use = set(representation.codes[1:, -1].tolist())
    assert stats["activation"][-1] == len(in_use) / tokenizer.codebook_size  # the codes the epoch trained with
    if restarts:
        fresh = set(tokenizer.encode(representation.text_embeddings[1:])[:, -1].tolist())
        assert 0 in in_use and 0 not in fresh
        # health as the tokenizer assigns now, not as the re-seeding left it
        assert stats["natural_activation"][-1] == len(fresh) / tokenizer.codebook_size
    else:
        assert "natural_activation" not in stats


def test_end_to_end_restarts_need_end_to_end_training(shared_encoder, tiny_dataset):
    with pytest.raises(ValueError, match="rq_end_to_end_restarts"):
        build(tiny_dataset, rq_end_to_end_restarts=True, rq_train_mode="two_stage")


def test_a_run_with_end_to_end_restarts_records_health_before_reseeding(shared_encoder, tiny_dataset, tmp_path):
    result = run("UnifiedSASRec", tiny_dataset.name, config_file_list=[str(tiny_dataset.yaml_path)],
                 config_dict=tiny_dataset.config_dict(**{**SMALL_UNIFIED, "epochs": 2}, rq_end_to_end_restarts=True,
                                                      checkpoint_dir=str(tmp_path)))
    assert len(result["codebook_natural_activation"]) == len(result["codebook_activation"]) == 2
    assert len(result["restarted_codewords"]) == 2 and all(n >= 0 for n in result["restarted_codewords"])
    assert all(0 < a <= 1 for row in result["codebook_natural_activation"] for a in row)


def test_a_run_with_learned_distances_records_the_cosine_weights_as_they_keep_training(shared_encoder, tiny_dataset,
                                                                                        tmp_path):
    result = run("UnifiedSASRec", tiny_dataset.name, config_file_list=[str(tiny_dataset.yaml_path)],
                 config_dict=tiny_dataset.config_dict(**{**SMALL_UNIFIED, "epochs": 2, "rq_distances": "learned"},
                                                      checkpoint_dir=str(tmp_path)))
    weights = result["codebook_cosine_weight"]
    assert len(weights) == 2 and all(len(row) == len(result["codebook_activation"][0]) for row in weights)
    assert all(0 < w < 1 for row in weights for w in row)
    assert weights[0] != weights[1]  # the mix keeps training with the recommendation model


def test_a_run_with_fixed_distances_records_no_cosine_weights(shared_encoder, tiny_dataset, tmp_path):
    result = run("UnifiedSASRec", tiny_dataset.name, config_file_list=[str(tiny_dataset.yaml_path)],
                 config_dict=tiny_dataset.config_dict(**{**SMALL_UNIFIED, "epochs": 1}, checkpoint_dir=str(tmp_path)))
    assert result["codebook_cosine_weight"] == []
