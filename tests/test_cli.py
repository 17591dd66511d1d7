"""Model resolution (plugin first, then RecBole) and the ``run_recbole_usr`` command line."""

import json

import pytest
import recbole.model.sequential_recommender.bert4rec as recbole_bert4rec
import recbole.model.sequential_recommender.gru4rec as recbole_gru4rec
import recbole.model.sequential_recommender.sasrec as recbole_sasrec

from conftest import SMALL_SASREC
from recbole_usr.cli import main, parse_args, run_command
from recbole_usr.utils import get_model

UNIFIED_SASREC_MODULE = "recbole_usr.model.sequential_recommender.unified_sasrec"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("SASRec", recbole_sasrec.SASRec),
        ("GRU4Rec", recbole_gru4rec.GRU4Rec),
        ("BERT4Rec", recbole_bert4rec.BERT4Rec),
    ],
)
def test_get_model_falls_back_to_recbole(name, expected):
    assert get_model(name) is expected


def test_get_model_finds_plugin_model():
    module = pytest.importorskip(UNIFIED_SASREC_MODULE)
    model = get_model("UnifiedSASRec")
    assert model is module.UnifiedSASRec
    assert model.__module__ == UNIFIED_SASREC_MODULE


def test_recbole_get_model_finds_plugin_model_after_import():
    module = pytest.importorskip(UNIFIED_SASREC_MODULE)
    import recbole.utils

    import recbole_usr  # noqa: F401  (registration happens on import)

    assert recbole.utils.get_model("UnifiedSASRec") is module.UnifiedSASRec


def test_get_model_unknown_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="NoSuchModelXyz"):
        get_model("NoSuchModelXyz")


def test_parse_args_splits_model_dataset_files_and_overrides():
    # `--config_files="a.yaml b.yaml"` reaches argv as one word once the shell drops the quotes.
    args, config_files, overrides = parse_args(
        ["--model=X", "--dataset=Y", "--config_files=a.yaml b.yaml", "--epochs=3", "--learning_rate=0.01"]
    )
    assert (args.model, args.dataset) == ("X", "Y")
    assert config_files == ["a.yaml", "b.yaml"]
    assert overrides == {"epochs": "3", "learning_rate": "0.01"}  # typed later by RecBole's Config
    assert args.results_file is None


def test_parse_args_defaults_and_short_flags():
    args, config_files, overrides = parse_args([])
    assert (args.model, args.dataset, config_files, overrides) == ("UnifiedSASRec", "ml-100k", None, {})
    args, _, _ = parse_args(["-m", "GRU4Rec", "-d", "Amazon_Beauty"])
    assert (args.model, args.dataset) == ("GRU4Rec", "Amazon_Beauty")


def test_parse_args_keeps_equals_signs_in_values():
    _, _, overrides = parse_args(["--eval_args={'mode': 'uni99'}", "--note=a=b"])
    assert overrides == {"eval_args": "{'mode': 'uni99'}", "note": "a=b"}


def test_parse_args_same_flag_twice_with_same_value_is_fine():
    _, _, overrides = parse_args(["--epochs=3", "--epochs=3"])
    assert overrides == {"epochs": "3"}


@pytest.mark.parametrize(
    "argv",
    [
        ["epochs=3"],  # no leading --
        ["--epochs"],  # no value
        ["--epochs", "3"],  # space instead of =
        ["--epochs=3", "--epochs=4"],  # conflicting values
    ],
)
def test_parse_args_rejects_malformed_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "epochs" in capsys.readouterr().err


def tiny_sasrec_argv(tiny_dataset, tmp_path, *extra):
    """Command-line arguments for a small RecBole SASRec run on the tiny dataset."""
    return [
        "--model=SASRec",
        f"--dataset={tiny_dataset.name}",
        f"--config_files={tiny_dataset.yaml_path}",
        f"--data_path={tiny_dataset.data_path}",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        *extra,
        *[f"--{key}={value}" for key, value in SMALL_SASREC.items()],
    ]


def test_main_trains_and_writes_results(tiny_dataset, tmp_path):
    results_file = tmp_path / "results.json"
    result = run_command(tiny_sasrec_argv(tiny_dataset, tmp_path, f"--results_file={results_file}"))
    written = json.loads(results_file.read_text())
    assert written["model"] == result["model"] == "SASRec"
    assert written["dataset"] == tiny_dataset.name
    # recbole-usr's overall.yaml: Recall, MRR, NDCG, Hit at 5 and 10 (RecBole's own: also Precision, k=10 only)
    expected_keys = {f"{metric}@{k}" for metric in ("recall", "mrr", "ndcg", "hit") for k in (5, 10)}
    assert set(written["test_result"]) == expected_keys
    assert written["test_result"] == pytest.approx(result["test_result"])
    assert len(written["train_epoch_seconds"]) == 1  # "--epochs=1" arrived as the int 1
    # Both full-ranking protocols, RecBole's model included. No tiny-dataset user's test item
    # is in their history, so removing seen items can only move each target up.
    by_protocol = written["test_result_by_protocol"]
    assert by_protocol["history_kept"] == pytest.approx(written["test_result"])
    for metric in expected_keys:
        assert by_protocol["history_removed"][metric] >= by_protocol["history_kept"][metric]
    assert by_protocol["history_removed"]["recall@5"] > by_protocol["history_kept"]["recall@5"]
    assert written["model_file"].startswith(str(tmp_path / "saved"))


def test_filter_seen_items_selects_and_reports_the_seen_removed_protocol(tiny_dataset, tmp_path):
    result = run_command(tiny_sasrec_argv(tiny_dataset, tmp_path, "--filter_seen_items=True"))
    assert result["protocol"] == "history_removed"
    by_protocol = result["test_result_by_protocol"]
    assert result["test_result"] == pytest.approx(by_protocol["history_removed"])
    assert by_protocol["history_removed"]["recall@5"] > by_protocol["history_kept"]["recall@5"]


def test_evaluate_retests_a_seen_removed_checkpoint_under_its_own_protocol(tiny_dataset, tmp_path):
    # recbole_usr.evaluate used to rank seen items whatever the checkpoint's filter_seen_items,
    # so its "same protocol" re-test of such a run reported RecBole's protocol instead
    from recbole_usr.evaluate import evaluate_checkpoint

    result = run_command(tiny_sasrec_argv(tiny_dataset, tmp_path, "--filter_seen_items=True"))
    again = evaluate_checkpoint(result["model_file"])
    assert again["protocol"] == "history_removed"
    assert again["valid_result"] == pytest.approx(result["best_valid_result"], abs=1e-9)
    assert again["test_result"] == pytest.approx(result["test_result"], abs=1e-9)
    for name in ("history_kept", "history_removed"):
        expected = result["test_result_by_protocol"][name]
        assert again["test_result_by_protocol"][name] == pytest.approx(expected, abs=1e-9)
    assert again["seen_share"] == pytest.approx(result["seen_share"])
    assert set(result["seen_share"]) == {"seen_share@5", "seen_share@10"}
