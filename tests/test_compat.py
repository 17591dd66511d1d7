"""RecBole 1.2.1 on numpy 2 / torch >= 2.6 / setuptools >= 82, and a full train-save-reload cycle."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from recbole.trainer import Trainer

from conftest import CHECKOUT_ROOT, SMALL_SASREC
from recbole_usr import compat
from recbole_usr.quick_start import load_data_and_model, run

FRESH_IMPORT = """
import json, os, sys
import numpy as np
NAMES = ("float_", "complex_", "unicode_", "bool8", "float", "int", "object", "str")
before = {name: name in np.__dict__ for name in NAMES}
import recbole_usr, recbole_usr.quick_start, recbole_usr.cli
from recbole.config import Config
print(json.dumps({
    "before": before,
    "aliases": {name: getattr(np, name).__name__ for name in NAMES},
    "env": os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),
    "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")),
    "recbole_quick_start": "recbole.quick_start" in sys.modules,
}))
"""


def test_fresh_import_patches_numpy_and_torch_load_without_ray():
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", FRESH_IMPORT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # no Config is built in that process: the metrics' np.float etc. must come from the shim
    assert report["aliases"] == {"float_": "float64", "complex_": "complex128", "unicode_": "str_",
                                 "bool8": "bool", "float": "float64", "int": "int64",
                                 "object": "object_", "str": "str_"}
    assert report["env"] == "1"
    assert report["ray"] == []
    assert report["recbole_quick_start"] is False


def test_aliases_in_this_process():
    assert np.float_ is np.float64
    assert np.complex_ is np.complex128
    assert np.unicode_ is np.str_
    assert np.bool8 is np.bool_


def test_torch_load_setting_respects_the_user(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0")
    compat.patch_torch_load()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "0"
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    compat.patch_torch_load()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def tiny_run(tiny, checkpoint_dir):
    return run(
        "SASRec",
        tiny.name,
        config_file_list=[str(tiny.yaml_path)],
        config_dict=tiny.config_dict(checkpoint_dir=str(checkpoint_dir), **SMALL_SASREC),
    )


def test_train_save_reload_evaluate_gives_the_same_metrics(tiny_dataset, tmp_path):
    result = tiny_run(tiny_dataset, tmp_path / "saved")
    model_file = result["model_file"]
    assert os.path.isfile(model_file)
    assert os.path.dirname(model_file) == str(tmp_path / "saved")
    assert len(result["train_epoch_seconds"]) == 1
    assert set(result["test_result"]) == {f"{m}@{k}" for m in ("recall", "mrr", "ndcg", "hit") for k in (5, 10)}

    # RecBole's own checkpoint (it pickles the Config) loads with torch's default weights_only
    checkpoint = torch.load(model_file, map_location="cpu")
    assert checkpoint["config"]["model"] == "SASRec"

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(model_file)
    assert config["hidden_size"] == SMALL_SASREC["hidden_size"]
    assert dataset.item_num == 13 and dataset.user_num == 31
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][name]), name

    reloaded = Trainer(config, model).evaluate(test_data, load_best_model=False, show_progress=False)
    assert dict(reloaded) == pytest.approx(result["test_result"], abs=1e-9)


def test_two_runs_keep_distinct_checkpoints(tiny_dataset, tmp_path):
    saved = tmp_path / "saved"
    first = tiny_run(tiny_dataset, saved)
    second = tiny_run(tiny_dataset, saved)  # well within the same second's naming of RecBole
    assert first["model_file"] != second["model_file"]
    assert sorted(os.listdir(saved)) == sorted(os.path.basename(r["model_file"]) for r in (first, second))


def test_import_leaves_autograd_anomaly_detection_off():
    # RecBole's sine.py switches it on for the whole process when its model package is imported.
    import subprocess
    import sys

    code = "import torch, recbole_usr, recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_evaluate_command_rereads_a_checkpoint_in_a_fresh_process(tiny_dataset, tmp_path):
    # same protocol: the stored test metrics come back; uni99: a sampled protocol runs to
    # metrics (RecBole's metrics need numpy aliases that only a built Config used to set)
    result = tiny_run(tiny_dataset, tmp_path / "saved")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(CHECKOUT_ROOT), os.environ.get("PYTHONPATH")])))
    reports = {}
    for mode in ("full", "uni99"):
        out = tmp_path / f"{mode}.json"
        done = subprocess.run(
            [sys.executable, "-m", "recbole_usr.evaluate", f"--model_file={result['model_file']}",
             f"--eval_mode={mode}", f"--results_file={out}"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        reports[mode] = json.loads(out.read_text())
    assert reports["full"]["test_result"] == pytest.approx(result["test_result"], abs=1e-9)
    assert reports["uni99"]["eval_mode"] == "uni99"
    # 12 items < 100 candidates: every item is ranked, so uni99 hits at least as often as full
    assert reports["uni99"]["test_result"]["hit@10"] >= reports["full"]["test_result"]["hit@10"]


def test_unknown_eval_mode_is_rejected(tiny_dataset, tmp_path):
    result = tiny_run(tiny_dataset, tmp_path / "saved")
    with pytest.raises(ValueError, match="uniN"):
        load_data_and_model(result["model_file"], eval_mode="sampled")
