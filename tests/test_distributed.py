"""RecBole's multi-process training through the plugin's CLI: gloo on CPU, two ranks."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from recbole_usr.distributed import run_processes
from recbole_usr.quick_start import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


def single_process_training_rows(tmp_path):
    from recbole.data import data_preparation

    from recbole_usr.data.cold_start import create_dataset
    from recbole_usr.quick_start import build_config

    config = build_config("UnifiedSASRec", "ml-100k", config_dict={"item_repr": "id", "hidden_size": 16,
                                                                   "checkpoint_dir": str(tmp_path), "state": "WARNING"})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return len(train_data.sampler)


def test_two_cpu_processes_train_on_both_ranks_and_report_the_test_once(tmp_path):
    results = tmp_path / "out.json"
    command = [sys.executable, os.path.join(ROOT, "run_recbole_usr.py"), "--model=UnifiedSASRec", "--dataset=ml-100k",
               "--item_repr=id", "--hidden_size=16", "--n_layers=1", "--n_heads=1", "--inner_size=16", "--epochs=1",
               "--nproc=2", f"--port={free_port()}", f"--results_file={results}", "--show_progress=False",
               f"--checkpoint_dir={tmp_path / 'saved'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    result = json.loads(results.read_text())
    rows = result["train_rows_per_rank"]
    single = single_process_training_rows(tmp_path)
    assert rows == [(single + 1) // 2] * 2  # each rank iterated its half (DistributedSampler pads to equal shards)
    assert result["device"] == "cpu"
    assert len(re.findall(r"test result:", output)) == 1  # rank 0 reports, rank 1 is silent
    assert 0 <= result["test_result"]["ndcg@10"] <= 1
    assert os.path.isfile(result["model_file"])


@pytest.mark.parametrize("kwargs", [{"nproc": 0}, {"nproc": 2, "world_size": 1}, {"nproc": 2, "world_size": 2,
                                                                                   "group_offset": 1}])
def test_impossible_process_groups_are_refused_before_spawning(kwargs):
    with pytest.raises(ValueError):
        run_processes(run, "UnifiedSASRec", "ml-100k", **kwargs)
