"""Item text -> frozen sentence embeddings aligned to RecBole's internal item ids, with a cache.

The real all-MiniLM-L6-v2 is used throughout; it is loaded once per session (``shared_encoder``).
"""

import logging
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset

from recbole_usr.data import text_embedding
from recbole_usr.data.text_embedding import cache_file, encode_texts, file_digest, load_item_text_embeddings
from recbole_usr.quick_start import build_config


def item_digest(tiny):
    return file_digest(str(tiny.dataset_dir / f"{tiny.name}.item"))

ENCODER = "all-MiniLM-L6-v2"
DIM = 384


def tiny_config(tiny, **overrides):
    return build_config("SASRec", tiny.name, [str(tiny.yaml_path)], tiny.config_dict(**overrides))


def encode(texts):
    return encode_texts(texts, ENCODER, show_progress=False)


def item_row(matrix, dataset, token):
    return matrix[dataset.token2id(dataset.iid_field, token)].numpy()


@pytest.fixture
def tiny_built(tiny_dataset):
    config = tiny_config(tiny_dataset)
    return config, create_dataset(config)


def test_matrix_shape_padding_and_fallback(tiny_built, shared_encoder, caplog):
    config, dataset = tiny_built
    with caplog.at_level(logging.WARNING):
        matrix = load_item_text_embeddings(config, dataset)

    assert dataset.item_num == 13  # 12 items in the .inter file + padding
    assert matrix.shape == (13, DIM) and matrix.dtype == torch.float32
    assert not torch.isnan(matrix).any()
    assert torch.count_nonzero(matrix[0]) == 0

    no_text = [dataset.token2id("item_id", token) for token in ("i11", "i12")]  # empty text, no .item row
    with_text = [i for i in range(1, 13) if i not in no_text]
    mean = matrix[with_text].mean(dim=0)
    for internal_id in no_text:
        assert torch.allclose(matrix[internal_id], mean, atol=1e-6)
    # items with text carry real (unit-norm, distinct) sentence embeddings
    assert torch.allclose(matrix[with_text].norm(dim=1), torch.ones(len(with_text)), atol=1e-4)
    assert len({tuple(row.tolist()) for row in matrix[with_text]}) == len(with_text)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(message.startswith("2 of 12 items") for message in warnings), warnings


def test_rows_align_with_item_text(tiny_built, shared_encoder):
    config, dataset = tiny_built
    matrix = load_item_text_embeddings(config, dataset)
    expected = {  # hand-written from the .item rows: entities unescaped, empty brand dropped
        "i01": "title: Foo & Bar; brand: Acme",
        "i02": "title: Baz Widget",
        "i05": "title: Soap & Sponge Set; brand: Clean Co",
    }
    direct = encode(list(expected.values()))
    for token, vector in zip(expected, direct):
        np.testing.assert_allclose(item_row(matrix, dataset, token), vector, atol=1e-5)
    # and not merely close to any text: i01's row is far from i02's text
    assert np.abs(item_row(matrix, dataset, "i01") - direct[1]).max() > 1e-2


def test_cache_written_then_reused(tiny_built, tiny_dataset, shared_encoder, monkeypatch, caplog):
    config, dataset = tiny_built
    path = cache_file(str(tiny_dataset.cache_dir), tiny_dataset.name, ["title", "brand"], ENCODER, item_digest(tiny_dataset))
    assert not os.path.exists(path)

    first = load_item_text_embeddings(config, dataset)
    assert os.path.isfile(path)
    assert len(shared_encoder) == 1  # one encoder load, on the miss
    with np.load(path) as cached:  # every .item row with text, i99 (not in .inter) included
        assert sorted(cached["item_tokens"]) == ["i01", "i02", "i03", "i04", "i05", "i06",
                                                 "i07", "i08", "i09", "i10", "i99"]
        assert cached["embeddings"].shape == (11, DIM)

    def no_encoding(*args, **kwargs):
        raise AssertionError("cache hit expected: nothing should be encoded")

    monkeypatch.setattr(text_embedding, "encode_texts", no_encoding)
    with caplog.at_level(logging.INFO):
        second = load_item_text_embeddings(config, dataset)
    assert torch.equal(first, second)
    assert any("cache hit" in r.getMessage() for r in caplog.records)
    assert os.listdir(tiny_dataset.cache_dir) == [os.path.basename(path)]


def test_other_text_fields_use_another_cache(tiny_built, tiny_dataset, shared_encoder):
    config, dataset = tiny_built
    both = load_item_text_embeddings(config, dataset)
    title_config = tiny_config(tiny_dataset, text_fields=["title"])
    title_only = load_item_text_embeddings(title_config, dataset)

    paths = {
        cache_file(str(tiny_dataset.cache_dir), tiny_dataset.name, fields, ENCODER, item_digest(tiny_dataset))
        for fields in (["title", "brand"], ["title"])
    }
    assert len(paths) == 2
    assert sorted(os.listdir(tiny_dataset.cache_dir)) == sorted(os.path.basename(p) for p in paths)
    assert len(shared_encoder) == 2  # the second field list was encoded, not read from the first cache
    # i03 has a brand, so its text changes; i02 has none, so "title: Baz Widget" both times
    assert not torch.allclose(both[dataset.token2id("item_id", "i03")],
                              title_only[dataset.token2id("item_id", "i03")], atol=1e-3)
    i02 = dataset.token2id("item_id", "i02")
    assert torch.allclose(both[i02], title_only[i02], atol=1e-5)


def test_cache_file_name_depends_on_every_key():
    base = cache_file("c", "D", ["title", "brand"], ENCODER)
    assert os.path.dirname(base) == "c" and os.path.basename(base).startswith("D.")
    assert base == cache_file("c", "D", ("title", "brand"), ENCODER)
    others = {
        cache_file("c", "E", ["title", "brand"], ENCODER),
        cache_file("c", "D", ["brand", "title"], ENCODER),
        cache_file("c", "D", ["title"], ENCODER),
        cache_file("c", "D", ["title", "brand"], "sentence-t5-base"),
        cache_file("c", "D", ["title", "brand"], ENCODER, "another .item file"),
    }
    assert base not in others and len(others) == 5


def test_unknown_text_field_is_named(tiny_dataset):
    config = tiny_config(tiny_dataset, text_fields=["title", "colour"])
    dataset = create_dataset(config)
    with pytest.raises(ValueError, match="colour"):
        load_item_text_embeddings(config, dataset)
    assert not tiny_dataset.cache_dir.exists() or not os.listdir(tiny_dataset.cache_dir)


def test_ml_100k_row_of_toy_story(shared_encoder, tmp_path):
    config = build_config("SASRec", "ml-100k",
                          config_dict={"text_cache_dir": str(tmp_path / "cache"), "show_progress": False})
    dataset = create_dataset(config)
    matrix = load_item_text_embeddings(config, dataset)
    assert matrix.shape == (dataset.item_num, DIM)
    # ml-100k.item, item 1: "Toy Story", 1995, "Animation Children's Comedy"
    expected = encode(["movie title: Toy Story; release year: 1995; class: Animation Children's Comedy"])[0]
    np.testing.assert_allclose(item_row(matrix, dataset, "1"), expected, atol=1e-5)


def test_cache_follows_changes_of_the_item_file(tiny_built, tiny_dataset, shared_encoder):
    config, dataset = tiny_built
    load_item_text_embeddings(config, dataset)
    item_file = tiny_dataset.dataset_dir / f"{tiny_dataset.name}.item"
    item_file.write_text(item_file.read_text().replace("Foo &amp; Bar", "Garden Hose"))
    updated = load_item_text_embeddings(config, dataset)
    expected = encode(["title: Garden Hose; brand: Acme"])[0]
    np.testing.assert_allclose(item_row(updated, dataset, "i01"), expected, atol=1e-5)


def test_loading_the_packaged_encoder_leaves_the_environment_alone():
    # A fresh process without HF_HUB_OFFLINE: the local model loads offline, and the
    # variable is still unset afterwards (no process-wide side effect of the library).
    import subprocess
    import sys

    code = (
        "import os\n"
        "from recbole_usr.data.text_embedding import load_sentence_encoder\n"
        "encoder = load_sentence_encoder('all-MiniLM-L6-v2')\n"
        "assert encoder.encode(['a lipstick']).shape == (1, 384)\n"
        "assert 'HF_HUB_OFFLINE' not in os.environ, os.environ['HF_HUB_OFFLINE']\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=300).returncode == 0
