"""Semantic-ID item representations (n-gram, SentencePiece, hashing) of arXiv 2306.08121."""

import itertools

import pytest
import torch

from conftest import fake_text_embeddings, prepare_tiny
from recbole_usr.evaluation import evaluate_slices
from recbole_usr import semantic_id_artifact as artifacts
from recbole_usr.model.item_representations import build_item_representation
from recbole_usr.model.item_representations.hashing import HashItemEmbedding, hash_item_ids
from recbole_usr.model.item_representations.ngram import NGramItemEmbedding, ngram_indices, ngram_table_rows
from recbole_usr.model.item_representations.sentencepiece import SPMItemEmbedding, code_strings
from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec
from recbole_usr.quick_start import load_data_and_model, run

# Hand-made code table: L = 3 levels, K = 4 codes per level; row 0 is padding.
CODES = torch.tensor([[0, 0, 0], [1, 2, 3], [3, 0, 2], [1, 2, 0]])
K = 4


def test_unigram_rows_are_level_offset_plus_code():
    assert ngram_indices(CODES, K, 1).tolist() == [[0, 4, 8], [1, 6, 11], [3, 4, 10], [1, 6, 8]]
    assert ngram_table_rows(3, K, 1) == 12


def test_bigram_rows_are_pair_offset_plus_base_k_pair():
    # row(l) = l*K*K + c_l*K + c_{l+1}
    expected = [[0, 16], [1 * 4 + 2, 16 + 2 * 4 + 3], [3 * 4 + 0, 16 + 0 * 4 + 2], [6, 16 + 8]]
    assert ngram_indices(CODES, K, 2).tolist() == expected
    assert ngram_table_rows(3, K, 2) == 2 * K * K


def test_bigram_rows_are_a_bijection_onto_the_table():
    all_codes = torch.tensor(list(itertools.product(range(3), repeat=3)))  # K=3, L=3: 27 items
    index = ngram_indices(all_codes, 3, 2)
    for position in range(2):
        # every (code, next code) pair at this position gets its own row, all inside its block
        pairs = {(a, b): row for (a, b), row in zip(all_codes[:, position : position + 2].tolist(), index[:, position].tolist())}
        assert len(pairs) == 9 and len(set(pairs.values())) == 9
        assert set(pairs.values()) == set(range(position * 9, (position + 1) * 9))


def test_ngram_rejects_bad_input():
    with pytest.raises(ValueError):
        ngram_indices(CODES, K, 4)  # longer than the code
    with pytest.raises(ValueError):
        ngram_indices(CODES, 3, 1)  # code 3 outside K = 3


@pytest.mark.parametrize("n", [1, 2])
def test_ngram_item_vector_is_sum_of_its_rows_and_padding_is_zero(n):
    module = NGramItemEmbedding(CODES, K, dim=5, n=n)
    table, losses = module()
    assert losses == {} and table.shape == (4, 5) and module.dim == 5
    assert torch.equal(table[0], torch.zeros(5))
    weight = module.table.weight
    for item in range(1, 4):
        assert torch.allclose(table[item], weight[ngram_indices(CODES[item : item + 1], K, n)[0]].sum(0))
    assert module.describe()["item_embedding"] == ngram_table_rows(3, K, n) * 5
    # items 1 and 3 share their first bigram (1, 2): one row gets both items' gradients
    table.sum().backward()
    assert weight.grad.abs().sum(1).count_nonzero() == ngram_indices(CODES[1:], K, n).unique().numel()


def skewed_codes(n_items=400, n_levels=3, codebook_size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    first = torch.multinomial(torch.tensor([8.0, 4, 2, 1, 1, 1, 1, 1]), n_items, True, generator=generator)
    rest = torch.randint(0, codebook_size, (n_items, n_levels - 1), generator=generator)
    rest[:, 0] = torch.where(first < 2, first + 1, rest[:, 0])  # frequent first codes fix the second
    codes = torch.cat([first[:, None], rest], dim=1)
    codes[0] = 0
    return codes


def test_code_strings_give_each_level_and_code_its_own_character():
    strings = code_strings(CODES, K)
    assert all(len(s) == 3 for s in strings)
    assert strings[1][0] != strings[3][2]  # code 1 at level 0 vs code 0 at level 2
    assert strings[1][:2] == strings[3][:2] and strings[1][2] != strings[3][2]
    assert len(set("".join(strings))) == len({(level, c) for row in CODES.tolist() for level, c in enumerate(row)})


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_spm_pieces_rejoin_to_the_code_string(tmp_path, model_type):
    codes = skewed_codes()
    module = SPMItemEmbedding(codes, 8, dim=4, vocab_size=60, model_type=model_type, cache_dir=str(tmp_path))
    strings = code_strings(codes[1:], 8)
    processor = module.processor
    for item, string in enumerate(strings, start=1):
        pieces = processor.encode(string, out_type=str)
        assert "".join(pieces) == string
        ids = [i for i in module.row_index[item].tolist() if i >= 0]
        assert "".join(processor.id_to_piece(i) for i in ids) == string
        assert processor.unk_id() not in ids
    assert list(tmp_path.glob("*.model"))  # the model was written to the cache dir
    table, _ = module()
    assert torch.equal(table[0], torch.zeros(4))
    row = module.row_index[5]
    assert torch.allclose(table[5], module.table.weight[row[row >= 0]].sum(0))
    counts = module.describe()
    assert counts["spm_pieces"] == module.table.num_embeddings <= 60
    if model_type == "bpe":  # merges happen: some frequent code pairs became one piece
        assert counts["mean_pieces_per_item"] < 3


def test_spm_vocab_below_the_alphabet_is_raised(tmp_path):
    codes = skewed_codes(n_items=50)
    module = SPMItemEmbedding(codes, 8, dim=4, vocab_size=5, cache_dir=str(tmp_path))
    n_chars = len(set("".join(code_strings(codes[1:], 8))))
    assert module.table.num_embeddings >= n_chars + 1


def test_hash_is_deterministic_and_seeded():
    ids = torch.arange(1000)
    first = hash_item_ids(ids, 97, seed=3)
    assert torch.equal(first, hash_item_ids(ids, 97, seed=3))
    assert not torch.equal(first, hash_item_ids(ids, 97, seed=4))
    assert int(first.min()) >= 0 and int(first.max()) < 97
    assert first.unique().numel() > 90  # spreads over nearly all buckets


def test_hash_with_one_bucket_collides_everything():
    assert hash_item_ids(torch.arange(50), 1, seed=0).unique().tolist() == [0]
    module = HashItemEmbedding(50, dim=6, buckets=1)
    table, _ = module()
    assert torch.equal(table[0], torch.zeros(6))
    assert torch.equal(table[1:], table[1:2].expand(49, 6))
    # the bucket is computed from the ID: nothing stored per item, serving = training = the table
    assert module.describe() == {"hash_table": 6, "item_embedding": 6, "id_only_64d_table": 50 * 64,
                                 "id_only_same_width_table": 50 * 6, "serving_size": 6, "training_size": 6,
                                 "distinct_buckets_used": 1}


# --- through UnifiedSASRec on the tiny dataset (text embeddings faked: no sentence encoder) ---

SMALL = {
    "item_repr": "ngram",
    "hidden_size": 16,
    "n_layers": 1,
    "n_heads": 2,
    "inner_size": 32,
    "semantic_dim": 8,
    "rq_hidden_sizes": [16],
    "rq_levels": 2,
    "rq_distances": ["cosine", "euclidean"],
    "rq_codebook_size": 4,
    "rq_pretrain_epochs": 2,
    "spm_vocab_size": 12,
    "hash_buckets": 5,
    "train_batch_size": 16,
    "eval_batch_size": 64,
    "show_progress": False,
    "state": "WARNING",
    "epochs": 1,
}


@pytest.fixture
def fake_text(monkeypatch):
    """Deterministic 12-d 'text embeddings' with two clusters, keyed by the raw item token."""
    load = fake_text_embeddings(spread=0.1, offset=3.0)
    monkeypatch.setattr(artifacts, "load_item_text_embeddings", load)


def build(tiny_dataset, **overrides):
    config, _, train_data, _, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", {**SMALL, **overrides})
    return config, train_data


@pytest.mark.parametrize(
    "overrides, table_key, rows",
    [
        ({"ngram_n": 1}, "unigram_table", 2 * 4),
        ({"ngram_n": 2}, "bigram_table", 1 * 4 * 4),
        ({"item_repr": "hash"}, "hash_table", 5),
        ({"item_repr": "spm"}, "spm_piece_table", None),
    ],
)
def test_unified_sasrec_trains_on_each_representation(fake_text, tiny_dataset, overrides, table_key, rows):
    config, train_data = build(tiny_dataset, **overrides)
    model = UnifiedSASRec(config, train_data._dataset)
    assert type(model.item_repr) is {"ngram": NGramItemEmbedding, "hash": HashItemEmbedding,
                                     "spm": SPMItemEmbedding}[config["item_repr"]]
    assert model.hidden_size == 16
    counts = model.parameter_counts
    if rows is not None:
        assert counts[table_key] == counts["item_embedding"] == rows * 16
    assert not any(name.startswith("item_repr.") and "table" not in name for name, _ in model.named_parameters())
    table, _ = model.item_table()
    assert table.shape == (train_data._dataset.item_num, 16) and torch.equal(table[0], torch.zeros(16))
    losses = model.calculate_loss(next(iter(train_data)))
    losses[0].backward()
    assert model.item_repr.table.weight.grad.abs().sum() > 0


def test_frozen_codes_separate_the_two_text_clusters(fake_text, tiny_dataset):
    config, train_data = build(tiny_dataset)
    representation = build_item_representation(config, train_data._dataset)
    tokens = train_data._dataset.field2id_token["item_id"]
    first_level = {int(tokens[i][1:]) % 2: set() for i in range(1, len(tokens))}
    for i in range(1, len(tokens)):
        first_level[int(tokens[i][1:]) % 2].add(int(representation.codes[i, 0]))
    assert first_level[0].isdisjoint(first_level[1])  # text clusters -> different first codes
    assert not representation.codes.requires_grad
    assert "codes" in representation.state_dict()  # saved with the checkpoint


def test_checkpoint_reload_keeps_codes_and_scores(fake_text, tiny_dataset):
    result = run("UnifiedSASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path)],
                 tiny_dataset.config_dict(**{**SMALL, "item_repr": "spm", "topk": [1, 3], "valid_metric": "NDCG@3"}))
    _, model, _, train_data, _, test_data = load_data_and_model(result["model_file"])
    # the rebuilt model (codes, pieces and table from the checkpoint) scores as the trained one
    reloaded = evaluate_slices(model, test_data, train_data._dataset)["overall"]
    for metric in ("recall@1", "ndcg@3"):
        assert reloaded[metric] == pytest.approx(result["test_result"][metric], abs=1e-4)


def test_unknown_item_repr_lists_the_new_ones(tiny_dataset):
    # caught by the property checks, before the dataset is built (recbole_usr/config_checks.py)
    with pytest.raises(ValueError, match="'item_repr' must be one of .*'ngram', 'spm', 'hash'.*got 'bogus'"):
        build(tiny_dataset, item_repr="bogus")


def test_use_semantic_false_is_the_deprecated_spelling_of_item_repr_id(tiny_dataset, caplog):
    from recbole_usr.model.item_representations.id_table import IDItemEmbedding

    config, train_data = build(tiny_dataset, item_repr="unified", use_semantic=False, id_dim=8)
    old = build_item_representation(config, train_data._dataset)
    assert any("use_semantic: False is deprecated; write item_repr: id with hidden_size: 8" in r.getMessage()
               for r in caplog.records)
    config, train_data = build(tiny_dataset, item_repr="id", hidden_size=8)
    caplog.clear()
    new = build_item_representation(config, train_data._dataset)
    assert type(old) is type(new) is IDItemEmbedding and old.dim == new.dim == 8
    assert old.describe() == new.describe() and not caplog.records


def test_config_value_keeps_zero_and_false():
    from recbole_usr.config_values import config_value

    config = {"id_dim": 0, "rq_kmeans_init": False, "rq_pretrain_epochs": None}
    assert config_value(config, "id_dim", 8) == 0
    assert config_value(config, "rq_kmeans_init", True) is False
    assert config_value(config, "rq_pretrain_epochs", 20) == 20  # ~ means the default
    assert config_value(config, "missing", 3) == 3
