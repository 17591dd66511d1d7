"""RecBole 1.2.1 on numpy 2 / torch >= 2.6 / setuptools >= 82, and a full train-save-reload cycle."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from recbole.trainer import Trainer

from conftest import CHECKOUT_ROOT, SMALL_SASREC
from recbole_usr.compat import load_checkpoint
from recbole_usr.quick_start import load_data_and_model, run

FRESH_IMPORT = """
import json, os, sys
import numpy as np
import recbole_usr, recbole_usr.quick_start, recbole_usr.cli
from recbole.config import Config
import recbole.evaluator.metrics
Config(model="SASRec", dataset="ml-100k", config_dict={"state": "WARNING", "train_neg_sample_args": None})  # RecBole's used to set aliases
NAMES = ("float", "int", "bool8", "float_", "complex_", "unicode_", "object", "str", "unicode")
print(json.dumps({
    "numpy": {name: name in np.__dict__ for name in NAMES},
    "recbole": {name: getattr(recbole.evaluator.metrics.np, name).__name__ for name in NAMES},
    "bool8": np.bool8 is np.bool_,
    "env": os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),
    "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")),
    "recbole_quick_start": "recbole.quick_start" in sys.modules,
}))
"""


def fresh_env():
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT_ROOT), env.get("PYTHONPATH")]))
    return env


def run_fresh(code, *args):
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=fresh_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fresh_import_keeps_numpy_and_torch_load_as_they_are_without_ray():
    report = run_fresh(FRESH_IMPORT)
    # numpy itself gains only bool8 (ray 2.6 reads it at import), even after a RecBole Config
    assert report["numpy"] == {name: name == "bool8" for name in report["numpy"]}
    assert report["bool8"] is True
    # RecBole's modules read numpy 1's meanings: np.float is float, np.int is int
    assert report["recbole"] == {"float": "float", "int": "int", "bool8": "bool", "float_": "float64",
                                 "complex_": "complex128", "unicode_": "str_", "object": "object",
                                 "str": "str", "unicode": "str"}
    assert report["env"] is None
    assert report["ray"] == []
    assert report["recbole_quick_start"] is False


def test_numpy_2_removals_still_raise_in_user_code():
    for name in ("float", "int", "float_", "complex_", "unicode_"):
        with pytest.raises(AttributeError):
            getattr(np, name)


class WritesMarker:
    """An untrusted pickle: unpickling it with the full unpickler creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


CHILD_LOAD = """
import sys, torch
try:
    torch.load(sys.argv[1])
except Exception as error:
    print(type(error).__name__)
"""
UNTRUSTED_LOAD = """
import json, pickle, subprocess, sys
import torch
import recbole_usr
def load(path):
    try:
        torch.load(path)
    except pickle.UnpicklingError:
        return "refused"
    return "loaded"
child = subprocess.run([sys.executable, "-c", sys.argv[3], sys.argv[2]], capture_output=True, text=True)
print(json.dumps({"process": load(sys.argv[1]), "child": child.stdout.strip(), "child_err": child.stderr[-500:]}))
"""


def test_untrusted_pickle_is_refused_after_import(tmp_path):
    # in this process (conftest imported recbole_usr), in a fresh one, and in that one's child
    markers = {where: tmp_path / f"marker_{where}" for where in ("here", "fresh", "child", "control")}
    files = {where: tmp_path / f"{where}.pth" for where in markers}
    for where, path in files.items():
        torch.save({"state_dict": {}, "payload": WritesMarker(markers[where])}, path)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(files["here"])
    report = run_fresh(UNTRUSTED_LOAD, files["fresh"], files["child"], CHILD_LOAD)
    assert report["process"] == "refused"
    assert report["child"] == "UnpicklingError", report["child_err"]
    assert not any(markers[where].exists() for where in ("here", "fresh", "child"))
    # the control: the file really runs code under the full unpickler
    torch.load(files["control"], weights_only=False)
    assert markers["control"].exists()


ANOMALY = """
import json, sys, torch
if sys.argv[1] == "before":
    torch.autograd.set_detect_anomaly(True)
import recbole_usr, recbole.model.sequential_recommender
at_import = torch.is_anomaly_enabled()
if sys.argv[1] == "after":
    torch.autograd.set_detect_anomaly(True)
import recbole_usr.quick_start, recbole.model.sequential_recommender.sine  # more RecBole
print(json.dumps([at_import, torch.is_anomaly_enabled()]))
"""


@pytest.mark.parametrize("user_setting, expected", [("none", [False, False]), ("before", [True, True]),
                                                    ("after", [False, True])])
def test_import_keeps_the_users_anomaly_detection(user_setting, expected):
    # RecBole's sine.py switches it on for the whole process when its model package is imported
    assert run_fresh(ANOMALY, user_setting) == expected


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

    # RecBole's checkpoint pickles its Config: torch's default refuses it, the plugin's loader
    # (used by the trainers and load_data_and_model for files they are given) reads it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(model_file, map_location="cpu")
    checkpoint = load_checkpoint(model_file)
    assert checkpoint["config"]["model"] == "SASRec"

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(model_file)
    assert config["hidden_size"] == SMALL_SASREC["hidden_size"]
    assert dataset.item_num == 13 and dataset.user_num == 31
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][name]), name

    # RecBole's Trainer reads a checkpoint it is given (resume, evaluate(model_file=...))
    trainer = Trainer(config, model)
    trainer.resume_checkpoint(model_file)
    assert trainer.start_epoch == checkpoint["epoch"] + 1
    reloaded = trainer.evaluate(test_data, model_file=model_file, show_progress=False)
    assert dict(reloaded) == pytest.approx(result["test_result"], abs=1e-9)


def test_two_runs_keep_distinct_checkpoints(tiny_dataset, tmp_path):
    saved = tmp_path / "saved"
    first = tiny_run(tiny_dataset, saved)
    second = tiny_run(tiny_dataset, saved)  # well within the same second's naming of RecBole
    assert first["model_file"] != second["model_file"]
    assert sorted(os.listdir(saved)) == sorted(os.path.basename(r["model_file"]) for r in (first, second))


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
