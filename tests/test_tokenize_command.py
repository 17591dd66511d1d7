"""``python -m recbole_usr.tokenize`` on the tiny dataset: files written, one unique ID per item."""

import csv
import json
import warnings

import torch

from recbole_usr.tokenize import run_command as tokenize_command
from test_training_output import pandas_future_warnings, skip_unless_recbole_itself_warns


def run_command(tiny_dataset, out_dir, *extra):
    argv = [
        f"--dataset={tiny_dataset.name}",
        f"--config_files={tiny_dataset.yaml_path}",
        f"--data_path={tiny_dataset.data_path}",
        f"--tokenizer_output_dir={out_dir}",
        "--semantic_dim=8",
        "--rq_hidden_sizes=[16]",
        "--rq_codebook_size=4",
        "--tokenizer_epochs=2",
        "--tokenizer_batch_size=8",
        "--tokenizer_kmeans_iters=3",
        "--tokenizer_dead_code_steps=1",
        *extra,
    ]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tokenize_command(argv)
    finally:
        torch.set_num_threads(previous)


def test_tokenize_command_writes_ids_stats_and_plot(tiny_dataset, shared_encoder, tmp_path):
    out_dir = tmp_path / "tokenizer"
    result = run_command(tiny_dataset, out_dir)

    assert result["chosen_scheme"] == "hybrid"  # UnifiedSASRec's rq_distances
    assert set(result["schemes"]) == {"cosine", "euclidean", "hybrid"}
    for name in ("semantic_ids.tsv", "stats.json", "codeword_usage.png", "rq_tokenizer.pth"):
        assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name

    with open(out_dir / "semantic_ids.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["item_id", "code_1", "code_2", "code_3", "dedup"]
    items = [row[0] for row in rows[1:]]
    # one row per item of the interactions (i01..i12), keyed by the original token; no padding row
    assert sorted(items) == [f"i{i:02d}" for i in range(1, 13)]
    ids = [tuple(int(c) for c in row[1:]) for row in rows[1:]]
    assert len(set(ids)) == len(ids)
    assert all(0 <= c < 4 for row in ids for c in row[:3])

    with open(out_dir / "stats.json", encoding="utf-8") as f:
        stats = json.load(f)
    assert stats["n_items"] == 12 and stats["chosen_scheme"] == "hybrid"
    hybrid = stats["schemes"]["hybrid"]
    assert hybrid["distances"] == ["cosine", "cosine", "euclidean"]
    assert len(hybrid["activation"]) == 3 and 0 < hybrid["unique_coverage"] <= 1
    assert "unique cov" in stats["table"]
    # the TSV's codes are the chosen scheme's: their statistics match the JSON
    shared = {}
    for row in ids:
        shared[row[:3]] = shared.get(row[:3], 0) + 1
    assert len(shared) == hybrid["n_distinct"] and max(shared.values()) == hybrid["max_collision"]


def test_tokenize_command_adds_the_scheme_rq_distances_names(tiny_dataset, shared_encoder, tmp_path):
    result = run_command(
        tiny_dataset, tmp_path / "out", "--tokenizer_schemes=['cosine']", "--rq_distances=euclidean",
        "--rq_levels=2",
    )
    assert list(result["schemes"]) == ["cosine", "euclidean"] and result["chosen_scheme"] == "euclidean"
    with open(tmp_path / "out" / "semantic_ids.tsv", encoding="utf-8") as f:
        assert f.readline().strip().split("\t") == ["item_id", "code_1", "code_2", "dedup"]


def test_tokenize_command_emits_no_pandas_future_warning(tiny_dataset, shared_encoder, tmp_path):
    skip_unless_recbole_itself_warns(tiny_dataset)  # the command creates its dataset as the runs do, silenced
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_command(tiny_dataset, tmp_path / "out", "--tokenizer_schemes=['hybrid']")
    assert pandas_future_warnings(caught) == []


def test_tokenize_command_records_sorted_codeword_usage(tiny_dataset, shared_encoder, tmp_path):
    result = run_command(tiny_dataset, tmp_path / "out", "--tokenizer_schemes=['hybrid']",
                         "--rq_kmeans_init=False", "--rq_restart_unused=False")
    usage = result["schemes"]["hybrid"]["codeword_usage"]
    assert len(usage) == 3 and all(len(level) == 4 and sum(level) == 12 for level in usage)
    assert all(level == sorted(level, reverse=True) for level in usage)
