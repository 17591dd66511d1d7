"""RecBole's own entry points, used as RecBole documents them, after ``import recbole_usr``:
the low-level API (Config / create_dataset / data_preparation / get_model / get_trainer /
fit / evaluate), ``recbole.quick_start.run_recbole`` and ``objective_function``. Each runs
in a fresh process, so nothing the test session imported helps it."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import CHECKOUT_ROOT

# Small enough for a one-epoch run on ml-100k in seconds on one CPU thread.
SMALL = {
    "epochs": 1,
    "MAX_ITEM_LIST_LENGTH": 10,
    "n_layers": 1,
    "n_heads": 1,
    "inner_size": 32,
    "train_batch_size": 4096,
    "eval_batch_size": 4096,
    "show_progress": False,
    "state": "WARNING",
}
SETTINGS = {
    "SASRec": {**SMALL, "hidden_size": 16, "loss_type": "CE", "train_neg_sample_args": None},
    "UnifiedSASRec": {**SMALL, "id_dim": 8, "semantic_dim": 8, "rq_hidden_sizes": [32], "rq_codebook_size": 16,
                      "rq_pretrain_epochs": 1, "train_batch_size": 1024},
}

SCRIPT = """
import json, sys
import recbole_usr                                   # first, as the README says
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.quick_start import objective_function, run_recbole
from recbole.utils import get_model, get_trainer, init_seed
from recbole_usr.recbole_config import plugin_property_files

model_name, settings = sys.argv[1], json.loads(sys.argv[2])
files = plugin_property_files(model_name, "ml-100k")
report = {}

# RecBole's documented low-level API
config = Config(model=model_name, dataset="ml-100k", config_file_list=files, config_dict=settings)
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
trainer.fit(train_data, valid_data, show_progress=False)
report["low_level"] = dict(trainer.evaluate(test_data))     # reloads the best checkpoint
report["trainer"] = type(trainer).__name__

report["run_recbole"] = run_recbole(model=model_name, dataset="ml-100k", config_file_list=files,
                                    config_dict=settings)["test_result"]
report["objective_function"] = objective_function(
    config_dict=dict(settings, model=model_name, dataset="ml-100k"), config_file_list=files)
print("REPORT " + json.dumps(report, default=float))
"""


@pytest.mark.parametrize("model_name", ["SASRec", "UnifiedSASRec"])
def test_recbole_quick_start_and_low_level_api_train_in_a_fresh_process(model_name, tmp_path):
    if importlib.util.find_spec("pkg_resources") is None:
        pytest.fail("recbole.quick_start imports ray 2.6, which needs pkg_resources: setup.cfg requires "
                    "setuptools<82 (pip install -e . installs it); this environment has a newer one")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT_ROOT), env.get("PYTHONPATH")]))
    settings = dict(SETTINGS[model_name], text_cache_dir=str(tmp_path / "text_cache"),
                    checkpoint_dir=str(tmp_path / "saved"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, model_name, json.dumps(settings)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.split("REPORT ", 1)[1])
    assert report["trainer"] == ("SemanticIDTrainer" if model_name == "UnifiedSASRec" else "Trainer")
    for result in (report["low_level"], report["run_recbole"], report["objective_function"]["test_result"]):
        assert 0.0 <= result["ndcg@10"] <= result["recall@10"] <= 1.0
    # same seed, same settings: RecBole's two entry points train the same model
    assert report["run_recbole"] == pytest.approx(report["low_level"], abs=1e-9)
