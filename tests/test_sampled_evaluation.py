"""Sampled evaluation (uniN) from one full score row per history gives RecBole's own numbers."""

import pytest
import torch
from recbole.trainer import Trainer
from recbole.utils import init_seed

from conftest import SMALL_SASREC
from recbole_usr.evaluation.sampled_from_full_sort import sampled_predict_from_full_sort
from recbole_usr.quick_start import load_data_and_model, run


@pytest.fixture
def sasrec_under_uni5(tiny_dataset, tmp_path):
    """RecBole's SASRec trained one epoch on the tiny data, reloaded with 5 sampled negatives."""
    tiny = tiny_dataset
    saved = tmp_path / "saved"
    result = run("SASRec", tiny.name, config_file_list=[str(tiny.yaml_path)],
                 config_dict=tiny.config_dict(checkpoint_dir=str(saved), **SMALL_SASREC))
    config, model, _, _, _, test_data = load_data_and_model(result["model_file"], eval_mode="uni5")
    return config, model, test_data


def evaluate_counting_encoded_rows(config, model, test_data):
    """(metrics, number of sequences the transformer encoded). RecBole draws the negatives
    anew on every pass, so each pass starts from the same seed."""
    init_seed(config["seed"], True)
    encoded = []
    handle = model.trm_encoder.register_forward_hook(lambda module, args, out: encoded.append(args[0].shape[0]))
    try:
        result = Trainer(config, model).evaluate(test_data, load_best_model=False, show_progress=False)
    finally:
        handle.remove()
    return dict(result), sum(encoded)


def test_grouped_scores_give_recbole_metrics_encoding_each_history_once(sasrec_under_uni5):
    config, model, test_data = sasrec_under_uni5
    own, own_rows = evaluate_counting_encoded_rows(config, model, test_data)
    with sampled_predict_from_full_sort(model) as wrapper:
        grouped, _ = evaluate_counting_encoded_rows(config, model, test_data)  # first batch: checked
        assert wrapper.agrees is True
        again, grouped_rows = evaluate_counting_encoded_rows(config, model, test_data)
    assert grouped == pytest.approx(own, abs=1e-6)
    assert again == pytest.approx(own, abs=1e-6)
    users = len(test_data.uid_list)
    assert own_rows == 6 * users  # target + 5 negatives, each encoding the history again
    assert grouped_rows == users  # once per history
    assert model.predict.__func__ is type(model).predict  # the class's predict is back


def test_a_model_whose_full_sort_disagrees_keeps_its_own_predict(sasrec_under_uni5, monkeypatch):
    config, model, test_data = sasrec_under_uni5
    own, _ = evaluate_counting_encoded_rows(config, model, test_data)
    real_full_sort = model.full_sort_predict
    monkeypatch.setattr(model, "full_sort_predict", lambda interaction: -real_full_sort(interaction))
    with sampled_predict_from_full_sort(model) as wrapper:
        kept, _ = evaluate_counting_encoded_rows(config, model, test_data)
    assert wrapper.agrees is False
    assert kept == pytest.approx(own, abs=1e-9)


def test_models_that_group_histories_themselves_are_left_alone():
    class GroupsItself(torch.nn.Module):
        predict_groups_histories = True

        def predict(self, interaction):
            return interaction

    model = GroupsItself()
    with sampled_predict_from_full_sort(model) as wrapper:
        assert wrapper is None
        assert model.predict.__func__ is GroupsItself.predict


def test_speed_benchmark_times_both_paths_to_the_same_metrics(tiny_dataset, tmp_path):
    # benchmarks/sampled_eval_speed.py: the grouped path and RecBole's row-by-row path draw the
    # same negatives (re-seeded), so their metrics agree; it writes what it timed
    import json

    from benchmarks.sampled_eval_speed import main

    result = run("SASRec", tiny_dataset.name, config_file_list=[str(tiny_dataset.yaml_path)],
                 config_dict=tiny_dataset.config_dict(checkpoint_dir=str(tmp_path / "saved"), **SMALL_SASREC))
    out = tmp_path / "speed.json"
    record = main([f"--model_file={result['model_file']}", "--eval_mode=uni5", f"--out={out}"])
    assert json.loads(out.read_text())["eval_mode"] == "uni5"
    grouped, row_by_row = record["full_sort_grouped"], record["row_by_row"]
    assert grouped["test"] == pytest.approx(row_by_row["test"]) and grouped["valid"] == pytest.approx(row_by_row["valid"])
    assert grouped["seconds"] > 0 and row_by_row["seconds"] > 0
