"""TIGER: prefix trie, constrained beam search, semantic-ID de-duplication, scoring, training."""

import math

import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import prepare_tiny
from recbole_usr.model.generative import PrefixTrie, constrained_beam_search
from recbole_usr.model.generative.semantic_ids import deduplicated_codes
from recbole_usr.model.sequential_recommender.tiger import TIGER, TIGERTrainer

# A small TIGER for the tiny dataset (12 items): 2 RQ levels of 4 codes + de-duplication.
# rq_pretrain_epochs 0: k-means codes only; training the tokenizer on 11 vectors collapses them.
SMALL_TIGER = {
    "hidden_size": 32,
    "n_heads": 2,
    "inner_size": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_user_tokens": 7,
    "semantic_dim": 8,
    "rq_hidden_sizes": [16],
    "rq_levels": 2,
    "rq_codebook_size": 4,
    "rq_pretrain_epochs": 0,
    "beam_size": 10,
    "train_batch_size": 32,
    "eval_batch_size": 64,
    "learning_rate": 0.005,
    "show_progress": False,
    "state": "WARNING",
    "epochs": 1,
}

# Hand-made catalogue: depth 2, level-0 vocabulary 4 (token 3 starts no item), level-1 vocabulary 3.
TRIE_CODES = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 2], [2, 2]])
TRIE_ITEMS = torch.tensor([1, 2, 3, 4, 5])
TRIE_VOCAB = [4, 3]


def hand_trie():
    return PrefixTrie(TRIE_CODES, item_ids=TRIE_ITEMS, vocab_sizes=TRIE_VOCAB)


def test_trie_accepts_every_valid_prefix_and_names_items():
    trie = hand_trie()
    assert trie.contains(torch.zeros(1, 0, dtype=torch.long)).tolist() == [True]  # empty prefix
    assert trie.contains(torch.tensor([[0], [1], [2]])).tolist() == [True, True, True]
    assert trie.contains(TRIE_CODES).all()
    assert trie.lookup(TRIE_CODES).tolist() == TRIE_ITEMS.tolist()
    assert trie.allowed(0, trie.root(1)).tolist() == [[True, True, True, False]]
    children = trie.walk(torch.tensor([[0], [1], [2]]))
    assert trie.allowed(1, children).tolist() == [[True, True, False], [True, False, True], [False, False, True]]


def test_trie_rejects_invalid_prefixes():
    trie = hand_trie()
    # 3 starts no item; (0, 2) and (2, 0) are not items; 7 and -1 are outside the vocabulary
    assert trie.contains(torch.tensor([[3], [7], [-1]])).tolist() == [False, False, False]
    invalid = torch.tensor([[0, 2], [2, 0], [3, 0], [1, 1], [0, 5]])
    assert trie.contains(invalid).tolist() == [False] * 5
    assert trie.lookup(invalid).tolist() == [-1] * 5
    dead = trie.walk(torch.tensor([[3]]))
    assert dead.tolist() == [-1]
    assert not trie.allowed(1, dead).any()  # nothing grows from a dead prefix
    with pytest.raises(ValueError, match="not unique"):
        PrefixTrie(torch.tensor([[0, 1], [0, 1]]))


# Per-user next-token probabilities: P(first) and P(second | first). User 0's most likely
# path (0, 2) (p = .35) and first token 3 (p = .4 at level 0 in user 1) are not items.
LEVEL0 = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
LEVEL1 = torch.tensor(
    [
        [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.4, 0.2, 0.4], [0.3, 0.3, 0.4]],
        [[0.9, 0.05, 0.05], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
    ]
)


def table_model(level, tokens, parents):
    """log P(next token | path so far) for tokens [B, W, level], from the fixed tables (stateless)."""
    batch, beams = tokens.shape[:2]
    if level == 0:
        return LEVEL0.log().unsqueeze(1).expand(batch, beams, -1)
    rows = torch.arange(batch).unsqueeze(1).expand(batch, beams)
    return LEVEL1[rows, tokens[..., 0]].log()


def by_hand(user):
    """Every valid item's probability for ``user``, best first."""
    probs = {int(i): float(LEVEL0[user, a] * LEVEL1[user, a, b]) for (a, b), i in zip(TRIE_CODES.tolist(), TRIE_ITEMS)}
    return sorted(probs.items(), key=lambda kv: -kv[1])


def test_beam_search_returns_best_valid_sequences_in_order():
    # user 0: item 3 (1,0) .18 > item 2 (0,1) .10 > item 5 (2,2) .06 > item 1 .05 > item 4 .03
    # user 1: item 5 (2,2) .24 > item 4 (1,2) .12 > item 1 (0,0) .09 > item 3 .04 > item 2 .005
    assert [i for i, _ in by_hand(0)] == [3, 2, 5, 1, 4]
    assert [i for i, _ in by_hand(1)] == [5, 4, 1, 3, 2]
    out = constrained_beam_search(table_model, hand_trie(), batch_size=2, beam_size=3)
    assert out.items.tolist() == [[3, 2, 5], [5, 4, 1]]
    expected = torch.tensor([[p for _, p in by_hand(u)[:3]] for u in (0, 1)]).log()
    assert torch.allclose(out.scores, expected, atol=1e-6)
    assert out.codes[0].tolist() == [[1, 0], [0, 1], [2, 2]]


def test_beam_search_pads_with_dead_beams_and_prunes_greedily():
    wide = constrained_beam_search(table_model, hand_trie(), batch_size=2, beam_size=8)
    assert wide.items[:, :5].tolist() == [[i for i, _ in by_hand(u)] for u in (0, 1)]  # all 5 items, in order
    assert (wide.items[:, 5:] == -1).all() and torch.isneginf(wide.scores[:, 5:]).all()
    # beam 1 is greedy: user 0 keeps first token 0 (p .5) and ends on item 2 (.10), not the best item 3 (.18)
    greedy = constrained_beam_search(table_model, hand_trie(), batch_size=2, beam_size=1)
    assert greedy.items.tolist() == [[2], [5]]
    assert math.isclose(float(greedy.scores[0, 0].exp()), 0.10, rel_tol=1e-5)


def test_dedup_level_makes_colliding_codes_unique():
    codes = torch.tensor([[1, 2], [0, 3], [1, 2], [1, 2], [0, 3], [2, 2]])
    full = deduplicated_codes(codes, codebook_size=4)
    assert torch.equal(full[:, :2], codes)
    assert full[:, 2].tolist() == [0, 0, 1, 2, 1, 0]
    assert torch.unique(full, dim=0).shape[0] == len(codes)
    with pytest.raises(ValueError, match="share one semantic ID"):
        deduplicated_codes(codes, codebook_size=2)  # 3 items share (1, 2): 3 dedup tokens > 2


def build(tiny_dataset, **overrides):
    config, _, train_data, valid_data, test_data = prepare_tiny(tiny_dataset, "TIGER", {**SMALL_TIGER, **overrides})
    model = TIGER(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def first_batch(data):
    batch = next(iter(data))
    return batch[0] if isinstance(batch, tuple) else batch


@pytest.fixture
def tiny_tiger(shared_encoder, tiny_dataset):
    return build(tiny_dataset)


def test_model_ids_are_unique_and_padding_names_no_item(tiny_tiger):
    _, model, train_data, *_ = tiny_tiger
    codes = model.item_codes
    assert codes.shape == (model.n_items, 3)
    assert torch.unique(codes[1:], dim=0).shape[0] == model.n_items - 1
    # i11 (empty text) and i12 (no .item row) share the mean text embedding: same RQ codes,
    # told apart only by the de-duplication level
    token2id = train_data._dataset.field2token_id["item_id"]
    a, b = codes[token2id["i11"]], codes[token2id["i12"]]
    assert torch.equal(a[:2], b[:2]) and a[2] != b[2]
    assert sorted(model.trie.lookup(codes[1:]).tolist()) == list(range(1, model.n_items))


def test_beam_size_below_topk_is_an_error(shared_encoder, tiny_dataset):
    with pytest.raises(ValueError, match="beam_size=5 is smaller than the largest topk"):
        build(tiny_dataset, beam_size=5, topk=[5, 10])


def test_full_sort_predict_scores_only_beam_items(tiny_tiger):
    _, model, _, _, test_data = tiny_tiger
    model.eval()
    interaction = first_batch(test_data)
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        beam = model.beam_search(interaction["user_id"], interaction["item_id_list"], interaction["item_length"])
    assert scores.shape == (len(interaction), model.n_items)
    finite = torch.isfinite(scores)
    assert (finite.sum(dim=1) == model.beam_size).all()  # 12 items, beam 10: 10 finite per user
    assert not finite[:, 0].any()  # padding
    assert_beam_scores_are_exact(model, interaction, scores, beam)


def assert_beam_scores_are_exact(model, interaction, scores, beam):
    """-inf exactly outside the beam; a beam item's score is its exact teacher-forced path
    log-probability (``predict``); beams best first."""
    finite = torch.isfinite(scores)
    beam_mask = torch.zeros_like(finite).scatter_(1, beam.items, True)
    assert torch.equal(finite, beam_mask)
    rows = torch.arange(len(interaction)).repeat_interleave(model.beam_size)
    candidates = interaction[rows]
    candidates.update(Interaction({"item_id": beam.items.flatten()}))
    with torch.no_grad():
        exact = model.predict(candidates).view(-1, model.beam_size)
    assert torch.allclose(scores.gather(1, beam.items), exact, atol=1e-4)
    assert (beam.scores[:, :-1] >= beam.scores[:, 1:]).all()


def test_history_is_trimmed_to_real_and_recent_items(tiny_tiger):
    _, model, *_ = tiny_tiger
    model.eval()
    model.history_items = 3
    seq = torch.tensor([[1, 2, 3, 4, 5, 0, 0, 0, 0, 0], [9, 2, 3, 4, 5, 7, 7, 7, 7, 7]])
    lengths = torch.tensor([5, 5])
    users = torch.tensor([1, 1])
    target = torch.tensor([6, 6])
    with torch.no_grad():
        logits = model.forward(users, seq, lengths, target)
        short = model.forward(users, seq[:, :5], lengths, target)
    # row 1 differs only in an item older than the last 3 and in padding after its length
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    assert torch.allclose(logits, short, atol=1e-5)


def test_training_lowers_the_loss(shared_encoder, tiny_dataset):
    config, model, train_data, valid_data, _ = build(tiny_dataset, epochs=15, eval_step=0)
    batch = first_batch(train_data)

    def loss():
        model.eval()
        with torch.no_grad():
            return float(model.calculate_loss(batch))

    before = loss()
    trainer = TIGERTrainer(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    after = loss()
    losses = list(trainer.train_loss_dict.values())
    assert after < 0.7 * before, (before, after)
    assert losses[-1] < losses[0]


def test_loading_a_checkpoint_rebuilds_the_trie_from_its_ids(tiny_tiger):
    _, model, *_ = tiny_tiger
    state = model.state_dict()
    swapped = state["item_codes"].clone()
    swapped[[1, 2]] = swapped[[2, 1]]  # the checkpoint's items 1 and 2 have each other's IDs
    state["item_codes"] = swapped
    model.load_state_dict(state)
    assert model.trie.lookup(swapped[1:3]).tolist() == [1, 2]


def test_trainer_evaluates_sampled_candidates_and_times_it(shared_encoder, tiny_dataset):
    # uni5: predict() scores the target and 5 sampled items per user (as uni99 does on real data)
    sampled = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni5"}
    config, model, train_data, valid_data, test_data = build(tiny_dataset, epochs=2, eval_args=sampled)
    trainer = TIGERTrainer(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)  # reloads the checkpoint (and its trie)
    for metric in ("recall@5", "ndcg@10"):
        assert 0.0 <= result[metric] <= 1.0
    assert len(trainer.eval_timings) == 3  # validation after each epoch, then test
    assert all(users == 30 and seconds > 0 for users, seconds in trainer.eval_timings)


def test_reload_takes_the_semantic_ids_from_the_checkpoint_without_a_fit(shared_encoder, tiny_dataset, tmp_path,
                                                                          monkeypatch):
    from recbole_usr import semantic_id_artifact
    from recbole_usr.quick_start import load_data_and_model, run

    settings = {**SMALL_TIGER, "checkpoint_dir": str(tmp_path / "saved")}  # k-means codes: a fit all the same
    result = run("TIGER", tiny_dataset.name, [str(tiny_dataset.yaml_path)], tiny_dataset.config_dict(**settings))
    for cached in tiny_dataset.cache_dir.glob("*.semantic-ids.*.pt"):
        cached.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer was fitted again on reload")

    monkeypatch.setattr(semantic_id_artifact, "fit_semantic_ids", refuse)
    config, model, _, _, _, test_data = load_data_and_model(result["model_file"])
    reloaded = TIGERTrainer(config, model).evaluate(test_data, load_best_model=False)
    assert dict(reloaded) == result["test_result"]
