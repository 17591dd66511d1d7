"""UnifiedSASRec's backbone options (transformer_layout, position_index, weight_init) and the
trainer's adam_betas / train_time_budget."""

import math

import pytest
import torch

from conftest import prepare_tiny
from recbole_usr.config_checks import value_errors
from recbole_usr.trainer import SemanticIDTrainer
from test_sampled_softmax import build, first_and_last_loss


def test_position_index_end_counts_back_from_the_last_item(tiny_dataset):
    item_seq = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]])
    _, start_model, _, _ = build(tiny_dataset)
    _, end_model, _, _ = build(tiny_dataset, position_index="end")
    assert start_model.position_ids(item_seq).tolist() == [[0, 1, 2, 3]] * 3
    assert end_model.position_ids(item_seq).tolist() == [[2, 1, 0, 0], [0, 0, 0, 0], [3, 2, 1, 0]]


@pytest.mark.parametrize("layout", ["post_ln", "pre_ln"])
@pytest.mark.parametrize("position_index", ["start", "end"])
def test_each_position_sees_only_earlier_items(tiny_dataset, layout, position_index):
    """Changing the last item leaves every earlier output as it was and changes the last one
    (with ``end`` positions a longer sequence shifts every position, so compare equal lengths)."""
    _, model, _, _ = build(tiny_dataset, transformer_layout=layout, position_index=position_index,
                           hidden_size=16, n_heads=2)
    model.eval()
    table, _ = model.item_table()
    first = model.encode_sequence(torch.tensor([[3, 5, 2, 7]]), table)
    second = model.encode_sequence(torch.tensor([[3, 5, 2, 9]]), table)
    if position_index == "start":
        assert torch.allclose(first[0, :3], second[0, :3], atol=1e-6)
    assert not torch.allclose(first[0, 3], second[0, 3], atol=1e-4)
    assert torch.isfinite(first).all()


def test_pre_ln_has_no_input_layernorm_and_ends_with_one(tiny_dataset):
    _, model, _, _ = build(tiny_dataset, transformer_layout="pre_ln", hidden_size=16)
    assert isinstance(model.LayerNorm, torch.nn.Identity)
    out = model.encode_sequence(torch.tensor([[3, 5, 2, 7]]), model.item_table()[0].detach())
    # the final LayerNorm (weight 1, bias 0 at initialisation): each position has mean 0, variance 1
    assert torch.allclose(out.mean(-1), torch.zeros(1, 4), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(1, 4), atol=1e-3)


def test_pre_ln_ss_training_lowers_the_loss(tiny_dataset):
    _, model, train_data, _ = build(tiny_dataset, transformer_layout="pre_ln", position_index="end",
                                    weight_init="xavier_normal", hidden_act="relu", train_neg_num=8,
                                    hidden_size=16, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    first, last = first_and_last_loss(model, next(iter(train_data)), steps=60)
    assert last < 0.5 * first


def test_xavier_normal_init_scales_the_id_table_by_its_shape(tiny_dataset):
    _, normal, _, _ = build(tiny_dataset, hidden_size=64, initializer_range=0.5)
    _, xavier, _, _ = build(tiny_dataset, hidden_size=64, initializer_range=0.5, weight_init="xavier_normal")
    table = xavier.item_repr.embedding.weight.detach()
    n_items, dim = table.shape
    assert table[0].abs().sum() == 0  # padding row stays zero
    assert table[1:].std().item() == pytest.approx(math.sqrt(2.0 / (n_items + dim)), rel=0.15)
    assert normal.item_repr.embedding.weight[1:].std().item() == pytest.approx(0.5, rel=0.15)


def test_adam_betas_reach_the_optimizer(tiny_dataset):
    config, model, _, _ = build(tiny_dataset, adam_betas=[0.9, 0.98])
    assert SemanticIDTrainer(config, model).optimizer.param_groups[0]["betas"] == (0.9, 0.98)
    config, model, _, _ = build(tiny_dataset)
    assert SemanticIDTrainer(config, model).optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # torch's


@pytest.mark.parametrize("key, value", [("adam_betas", [0.9]), ("adam_betas", [0.9, 1.5]),
                                        ("transformer_layout", "pre-ln"), ("position_index", "last"),
                                        ("weight_init", "xavier"), ("train_time_budget", 0)])
def test_bad_backbone_and_trainer_values_are_named(key, value):
    class Properties(dict):  # RecBole's Config answers None for a property nobody set
        def __missing__(self, key):
            return None

    assert any(key in error for error in value_errors(Properties({key: value})))
    assert value_errors(Properties({"adam_betas": [0.9, 0.98], "transformer_layout": "pre_ln"})) == []


def fit(tiny_dataset, tmp_path, **overrides):
    config, _, train_data, valid_data, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", {
        "item_repr": "id", "hidden_size": 8, "n_layers": 1, "n_heads": 1, "inner_size": 16, "epochs": 4,
        "stopping_step": 10, "show_progress": False, "state": "WARNING", "checkpoint_dir": str(tmp_path), **overrides})
    from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec
    trainer = SemanticIDTrainer(config, UnifiedSASRec(config, train_data._dataset))
    trainer.fit(train_data, valid_data, saved=True)
    return trainer


def test_train_time_budget_stops_at_an_epoch_boundary_and_keeps_the_best_checkpoint(tiny_dataset, tmp_path):
    spent = fit(tiny_dataset, tmp_path, train_time_budget=1e-9)
    assert spent.stopped_by_time_budget and len(spent.train_loss_dict) == 1  # the first epoch always runs
    assert torch.load(spent.saved_model_file, weights_only=False)["epoch"] == 0
    unlimited = fit(tiny_dataset, tmp_path)
    assert not unlimited.stopped_by_time_budget and len(unlimited.train_loss_dict) == 4


def test_inverse_sqrt_schedule_holds_then_decays_by_the_square_root(tiny_dataset):
    config, model, _, _ = build(tiny_dataset, lr_schedule="inverse_sqrt", lr_constant_steps=4, learning_rate=0.01)
    trainer = SemanticIDTrainer(config, model)
    rates = []
    for _ in range(16):
        trainer.optimizer.step()  # no gradients: only the schedule moves
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates[:3] == pytest.approx([0.01] * 3)  # steps 1-3: constant
    assert rates[3] == pytest.approx(0.01) and rates[15] == pytest.approx(0.01 * math.sqrt(4 / 16))
    config, model, _, _ = build(tiny_dataset, learning_rate=0.01)
    unscheduled = SemanticIDTrainer(config, model)
    unscheduled.optimizer.step()
    assert unscheduled.lr_scheduler is None and unscheduled.optimizer.param_groups[0]["lr"] == 0.01


def left_padded_reference(model, item_seq, table):
    """RecTools' SASRec computed literally: each row left-padded to MAX_ITEM_LIST_LENGTH with
    zero vectors, causal attention only (no key padding mask), padding re-zeroed before every
    block and before the final LayerNorm. Returns the outputs at the real positions."""
    encoder, outputs = model.trm_encoder, []
    for row in item_seq:
        real = row[row != 0].unsqueeze(0)
        n, length = real.shape[1], model.max_seq_length
        emb = torch.nn.functional.embedding(real, table) + model.position_embedding(model.position_ids(real))
        x = torch.zeros(1, length, emb.shape[2])
        x[:, length - n:] = emb
        timeline = (torch.arange(length) >= length - n).view(1, length, 1).float()
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        for layer in encoder.layers:
            x = layer(x * timeline, causal)
        outputs.append(encoder.final_norm(x * timeline)[0, length - n:])
    return outputs


def test_attend_padding_matches_rectools_left_padded_attention(tiny_dataset):
    _, model, _, _ = build(tiny_dataset, transformer_layout="pre_ln", position_index="end", attend_padding=True,
                           MAX_ITEM_LIST_LENGTH=6, n_layers=2, n_heads=2, hidden_size=16)
    torch.manual_seed(0)
    for layer in model.trm_encoder.layers:  # non-zero biases: the padding slots' keys and values
        layer.attention.in_proj_bias.data.normal_(0, 1.0)
    model.eval()
    table, _ = model.item_table()
    item_seq = torch.tensor([[3, 5, 2, 0, 0, 0], [4, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        ours = model.encode_sequence(item_seq, table)
        reference = left_padded_reference(model, item_seq, table)
        model.attend_padding = False
        masked = model.encode_sequence(item_seq, table)
    for row, expected in enumerate(reference):
        assert torch.allclose(ours[row, :len(expected)], expected, atol=1e-5)
    assert not torch.allclose(masked[0, :3], reference[0], atol=1e-3)  # padding seen: a different model
    assert torch.allclose(masked[2], reference[2], atol=1e-5)  # a full row has no padding to see


def test_attend_padding_needs_the_pre_ln_layout(tiny_dataset):
    with pytest.raises(ValueError, match="attend_padding"):
        build(tiny_dataset, attend_padding=True)


@pytest.mark.parametrize("attention_output_dropout", [True, False])
def test_attention_output_dropout_is_the_only_randomness_left(attention_output_dropout):
    """With the feed-forward silenced and no attention-weight dropout, training mode differs
    from evaluation only through the attention output's dropout."""
    from recbole_usr.model.pre_ln_transformer import PreLNTransformerEncoder
    torch.manual_seed(0)
    encoder = PreLNTransformerEncoder(n_layers=1, hidden_size=8, layer_norm_eps=1e-12, n_heads=2, inner_size=16,
                                      hidden_dropout_prob=0.5, attn_dropout_prob=0.0, hidden_act="relu",
                                      attention_output_dropout=attention_output_dropout)
    last_linear = encoder.layers[0].feed_forward[3]
    last_linear.weight.data.zero_()
    last_linear.bias.data.zero_()
    x = torch.randn(2, 5, 8)
    trained = encoder.train()(x)
    evaluated = encoder.eval()(x)
    assert torch.allclose(trained, evaluated, atol=1e-6) != attention_output_dropout


def test_attention_output_dropout_off_needs_the_pre_ln_layout(tiny_dataset):
    with pytest.raises(ValueError, match="attention_output_dropout"):
        build(tiny_dataset, attention_output_dropout=False)
