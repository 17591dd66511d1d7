"""Runs that share a working directory: RecBole's check-then-``makedirs`` of ``log/`` and
``saved/`` must not kill the process that loses the race (two recipe runs started a second apart
did, as did two ranks of one run)."""

import os

import pytest

from conftest import SMALL_SASREC
from recbole_usr.quick_start import run
from recbole_usr.shared_dirs import recbole_dirs_shared


def racing(monkeypatch, *paths):
    """``os.path.exists`` says no for ``paths``, which do exist: what a process sees when another
    made them between its existence check and its ``makedirs``."""
    real_exists = os.path.exists
    hidden = {os.path.normpath(path) for path in paths}
    monkeypatch.setattr(os.path, "exists", lambda path: os.path.normpath(path) not in hidden and real_exists(path))


def test_recbole_dirs_shared_tolerates_the_race_and_ends_with_its_context(tmp_path, monkeypatch):
    import recbole.trainer.trainer as recbole_trainer
    import recbole.utils.logger as recbole_logger

    shared = tmp_path / "saved"
    shared.mkdir()
    racing(monkeypatch, shared)
    with pytest.raises(FileExistsError):
        recbole_trainer.ensure_dir(str(shared))  # RecBole's own
    with recbole_dirs_shared():
        recbole_trainer.ensure_dir(str(shared))
        recbole_logger.ensure_dir(str(shared))
        recbole_trainer.ensure_dir(str(tmp_path / "new" / "dir"))
    assert (tmp_path / "new" / "dir").is_dir()
    with pytest.raises(FileExistsError):
        recbole_trainer.ensure_dir(str(shared))


def test_a_run_trains_when_another_made_log_and_saved_in_between(tiny_dataset, monkeypatch):
    for directory in ("log/SASRec", "saved"):
        os.makedirs(directory)  # in the test's own working directory (conftest)
    racing(monkeypatch, "log", "log/SASRec", "saved")
    settings = tiny_dataset.config_dict(checkpoint_dir="saved", **SMALL_SASREC)
    result = run("SASRec", tiny_dataset.name, config_file_list=[str(tiny_dataset.yaml_path)], config_dict=settings)
    assert os.path.dirname(result["model_file"]) == "saved" and os.path.isfile(result["model_file"])
    assert result["test_result"]["ndcg@10"] >= 0


def test_the_representation_table_trains_when_another_made_log_and_saved_in_between(tiny_dataset, tmp_path,
                                                                                    monkeypatch):
    import json

    from benchmarks.item_repr_table import main

    for directory in ("log/UnifiedSASRec", "saved"):
        os.makedirs(directory)
    racing(monkeypatch, "log", "log/UnifiedSASRec", "saved")
    settings = [f"{key}={value}" for key, value in SMALL_SASREC.items() if key != "epochs"]
    out = tmp_path / "table"
    main(["--dataset", tiny_dataset.name, "--epochs", "1", "--reprs", "id", "--out", str(out),
          "--config_files", str(tiny_dataset.yaml_path),
          "--set", f"data_path={tiny_dataset.data_path}", "checkpoint_dir=saved", *settings])
    report = json.loads((tmp_path / "table.json").read_text())
    assert [run["seed"] for run in report["runs"]["id"]] == [2020]
    row = report["results"]["id"]  # both protocols, over the same test rows
    assert row["slices"]["overall"]["n_targets"] == row["slices_seen_removed"]["overall"]["n_targets"] > 0
