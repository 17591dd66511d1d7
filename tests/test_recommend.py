"""``recbole_usr.recommend``: top-k per user from a checkpoint, seen-item filter, item export."""

import csv
import html
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SMALL_SASREC, TINY_ITEM_ROWS, item_token, make_tiny_dataset, prepare_tiny
from recbole_usr.quick_start import load_data_and_model, run
from recbole_usr.recommend import history_interaction, latest_histories, main, run_command
from test_tiger import SMALL_TIGER
from test_unified_sasrec import SMALL_UNIFIED

SETTINGS = {"SASRec": SMALL_SASREC, "UnifiedSASRec": SMALL_UNIFIED, "TIGER": SMALL_TIGER}


def user_items(user):
    """The tiny dataset's user ``uNN`` sees items NN, NN+1, ..., NN+5 (mod 12), in that order."""
    index = int(user[1:])
    return [item_token((index + step) % 12) for step in range(6)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, sentence_encoder):
    """``checkpoint(model)``: a 1-epoch model on the tiny dataset, trained once per module."""
    from recbole_usr.data import text_embedding

    root = tmp_path_factory.mktemp("recommend")
    tiny = make_tiny_dataset(root)
    trained = {}

    def checkpoint(model):
        if model not in trained:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(root)
                patch.setattr(text_embedding, "load_sentence_encoder", lambda name, device="cpu": sentence_encoder)
                result = run(model, tiny.name, config_file_list=[str(tiny.yaml_path)],
                             config_dict=tiny.config_dict(**SETTINGS[model], checkpoint_dir=str(root / "saved")))
            trained[model] = result["model_file"]
        return trained[model]

    return checkpoint


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("max_len", [10, 4])
def test_histories_are_each_users_latest_items(tiny_dataset, max_len):
    _, dataset, *_ = prepare_tiny(tiny_dataset, "SASRec", {**SMALL_SASREC, "MAX_ITEM_LIST_LENGTH": max_len})
    users, item_seq, item_seq_len = latest_histories(dataset)
    user_tokens = dataset.field2id_token["user_id"]
    item_tokens = dataset.field2id_token["item_id"]
    assert len(users) == 30 and item_seq.shape == (30, max_len)
    for user, seq, length in zip(users.tolist(), item_seq.tolist(), item_seq_len.tolist()):
        expected = user_items(user_tokens[user])[-max_len:]  # train + valid + test, most recent kept
        assert [item_tokens[item] for item in seq[:length]] == expected
        assert seq[length:] == [0] * (max_len - length)


@pytest.mark.parametrize("model_name", ["SASRec", "UnifiedSASRec", "TIGER"])
def test_recommends_k_real_items_and_top1_is_full_sort_argmax(shared_encoder, checkpoints, tmp_path, model_name):
    model_file, output, topk = checkpoints(model_name), tmp_path / "recs.csv", 5
    assert main([f"--model_file={model_file}", f"--topk={topk}", f"--output={output}"]) == 0
    rows = read_rows(output)
    config, model, dataset, *_ = load_data_and_model(model_file)
    catalogue = set(dataset.field2id_token["item_id"][1:])  # without [PAD]
    assert len(catalogue) == 12
    by_user = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    assert len(by_user) == 30  # every user
    for user, recs in by_user.items():
        assert [int(row["rank"]) for row in recs] == list(range(1, topk + 1))
        assert len({row["item_id"] for row in recs}) == topk
        assert {row["item_id"] for row in recs} <= catalogue
        scores = [float(row["score"]) for row in recs]
        assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()
        for row in recs:  # titles from the .item file, HTML entities unescaped; i12 has no row
            expected = html.unescape(TINY_ITEM_ROWS[row["item_id"]][0]) if row["item_id"] in TINY_ITEM_ROWS else ""
            assert row["title"] == expected

    model.eval()
    users, item_seq, item_seq_len = latest_histories(dataset)
    with torch.no_grad():
        scores = model.full_sort_predict(history_interaction(model, users, item_seq, item_seq_len))
    best = scores[:, 1:].argmax(dim=1) + 1  # padding column excluded
    item_tokens, user_tokens = dataset.field2id_token["item_id"], dataset.field2id_token["user_id"]
    for user, item, score in zip(users.tolist(), best.tolist(), scores[:, 1:].max(dim=1).values.tolist()):
        top = by_user[user_tokens[user]][0]
        assert top["item_id"] == item_tokens[item]
        assert float(top["score"]) == pytest.approx(score, rel=1e-5, abs=1e-6)


def test_user_ids_select_users_and_unknown_user_is_named(checkpoints, tmp_path):
    model_file, output = checkpoints("SASRec"), tmp_path / "recs.csv"
    run_command([f"--model_file={model_file}", "--topk=3", "--user_ids=u07,u02", f"--output={output}"])
    assert [row["user_id"] for row in read_rows(output)] == ["u07"] * 3 + ["u02"] * 3
    with pytest.raises(ValueError, match="nobody"):
        run_command([f"--model_file={model_file}", "--user_ids=u01,nobody", f"--output={tmp_path / 'x.csv'}"])
    assert not (tmp_path / "x.csv").exists()


def test_filter_seen_items_removes_history_and_keeps_order(checkpoints, tmp_path):
    model_file = checkpoints("SASRec")
    run_command([f"--model_file={model_file}", "--topk=12", f"--output={tmp_path / 'all.csv'}"])
    run_command([f"--model_file={model_file}", "--topk=5", "--filter_seen_items=True",
                 f"--output={tmp_path / 'unseen.csv'}"])
    ranked, unseen = {}, {}
    for path, into in ((tmp_path / "all.csv", ranked), (tmp_path / "unseen.csv", unseen)):
        for row in read_rows(path):
            into.setdefault(row["user_id"], []).append(row["item_id"])
    # unfiltered, users do get items of their own history (RecBole's protocol)
    assert any(set(items[:5]) & set(user_items(user)) for user, items in ranked.items())
    for user, items in unseen.items():
        assert not set(items) & set(user_items(user))
        assert items == [item for item in ranked[user] if item not in user_items(user)][:5]


@pytest.mark.parametrize("model_name, has_codes, has_vectors",
                         [("SASRec", False, True), ("UnifiedSASRec", True, True), ("TIGER", True, False)])
@pytest.mark.parametrize("extension", ["csv", "parquet"])
def test_export_items_round_trips(shared_encoder, checkpoints, tmp_path, model_name, has_codes, has_vectors, extension):
    if extension == "parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"items.{extension}"
    model_file = checkpoints(model_name)
    run_command([f"--model_file={model_file}", f"--export_items={path}"])
    frame = pd.read_csv(path) if extension == "csv" else pd.read_parquet(path)
    _, model, dataset, *_ = load_data_and_model(model_file)
    model.eval()
    assert frame["item_id"].tolist() == list(dataset.field2id_token["item_id"][1:])
    code_columns = [column for column in frame.columns if column.startswith("code_")]
    vector_columns = [column for column in frame.columns if column.startswith("v_")]
    assert bool(code_columns) == has_codes and bool(vector_columns) == has_vectors
    with torch.no_grad():
        if model_name == "SASRec":
            table = model.item_embedding.weight.detach()
        elif model_name == "UnifiedSASRec":
            table = model.item_table()[0]
            assert np.array_equal(frame[code_columns].to_numpy(), model.item_repr.item_codes().numpy())
        else:
            assert np.array_equal(frame[code_columns].to_numpy(), model.item_codes[1:].numpy())
    if has_vectors:
        assert len(vector_columns) == table.shape[1]
        assert np.array_equal(frame[vector_columns].to_numpy(np.float32), table[1:].numpy())


def test_parquet_without_pyarrow_is_a_clear_error_before_loading(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(ImportError, match=r"pyarrow.*--export_items=.*items\.csv"):
        run_command([f"--model_file={tmp_path / 'missing.pth'}", f"--export_items={tmp_path / 'items.parquet'}"])


def test_tiger_beam_widens_so_filtered_users_still_get_k_items(shared_encoder, checkpoints, tmp_path):
    # beam_size 10 would hold up to 6 of a user's 6 known items; 6 of the 12 items are unseen
    output = tmp_path / "recs.csv"
    run_command([f"--model_file={checkpoints('TIGER')}", "--topk=6", "--filter_seen_items=True", f"--output={output}"])
    unseen = {}
    for row in read_rows(output):
        unseen.setdefault(row["user_id"], []).append(row["item_id"])
    assert len(unseen) == 30
    for user, items in unseen.items():
        assert sorted(items) == sorted(set(user_items(user)) ^ {item_token(i) for i in range(12)})
