"""Run any model, ours or RecBole's, the way ``recbole.quick_start`` does, without importing it.

``recbole.quick_start`` imports ray (see :mod:`recbole_usr.compat`); this module rebuilds its
two entry points, :func:`run` and :func:`load_data_and_model`, on RecBole's public pieces,
adding the plugin's property files, dataset lookup and model lookup.

Property precedence (lowest first): RecBole's own defaults, ``properties/overall.yaml``,
``properties/model/<model>.yaml``, ``properties/dataset/<dataset>.yaml``, the user's
``config_file_list``, then ``config_dict`` (the command line's ``--key=value``).
"""

import contextlib
import difflib
import glob
import os
import resource
import sys
import time
import uuid
from logging import getLogger

import recbole
import torch
import yaml
from recbole.config import Config
from recbole.data import data_preparation
from recbole.utils import get_local_time, init_logger, init_seed, set_color
from recbole.utils import argument_list

import recbole_usr  # noqa: F401  (compat + registration)
from recbole_usr.compat import load_checkpoint
from recbole_usr.data.cold_start import create_dataset  # RecBole's, plus the cold-item split
from recbole_usr.data.dataset_lookup import find_dataset_root
from recbole_usr.evaluation.sampled_from_full_sort import sampled_predict_from_full_sort
from recbole_usr.utils import get_model, get_trainer

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")
RECBOLE_PROPERTIES_DIR = os.path.join(os.path.dirname(recbole.__file__), "properties")
# Keys RecBole sets itself or reads without listing them in a yaml.
EXTRA_KNOWN_KEYS = {"model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "device",
                    "local_rank", "nproc", "world_size", "offset", "ip", "port", "eval_type",
                    "single_spec", "train_neg_sample_args", "valid_neg_sample_args",
                    "test_neg_sample_args", "benchmark_filename", "neg_prefix", "numerical_features",
                    "discretization", "normalize_field", "normalize_all", "wandb_project",
                    "additional_feat_suffix", "preload_weight", "alias_of_user_id",
                    "alias_of_item_id", "alias_of_entity_id", "alias_of_relation_id"}


def plugin_property_files(model_name, dataset):
    """The plugin's yaml files for this run, lowest precedence first."""
    candidates = [
        os.path.join(PROPERTIES_DIR, "overall.yaml"),
        os.path.join(PROPERTIES_DIR, "model", f"{model_name}.yaml"),
        os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
    ]
    return [path for path in candidates if os.path.isfile(path)]


def known_property_names():
    """Every key of every RecBole and recbole-usr property yaml, plus RecBole's argument lists."""
    names = set(EXTRA_KNOWN_KEYS)
    for group in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        names.update(getattr(argument_list, group, []))
    for root in (RECBOLE_PROPERTIES_DIR, PROPERTIES_DIR):
        for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
            with open(path) as f:
                content = yaml.safe_load(f)
            if isinstance(content, dict) and "url" not in os.path.basename(path):
                names.update(content)
    return names


def check_property_names(names, where):
    """Raise on a property no yaml defines: a typo would otherwise be silently ignored."""
    known = known_property_names()
    unknown = [name for name in names if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ValueError(
            f"Unknown propert{'y' if len(unknown) == 1 else 'ies'} in {where}: {', '.join(hints)}. "
            "Pass --strict_properties=False to allow properties that no RecBole or recbole-usr "
            "yaml defines."
        )


def user_file_keys(config_file_list):
    keys = []
    for path in config_file_list or []:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Property file not found: {path}")
        with open(path) as f:
            keys.extend((yaml.safe_load(f) or {}).keys())
    return keys


@contextlib.contextmanager
def isolated_argv():
    """RecBole's Config parses ``sys.argv`` itself; the caller's flags arrive via config_dict."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def build_config(model, dataset, config_file_list=None, config_dict=None, allow_download=True):
    """A RecBole ``Config`` with the plugin's property files and the dataset located."""
    config_dict = dict(config_dict or {})
    model_class = get_model(model) if isinstance(model, str) else model
    model_name = model_class.__name__
    files = plugin_property_files(model_name, dataset) + list(config_file_list or [])
    file_keys = user_file_keys(config_file_list)
    with isolated_argv():
        try:
            config = Config(model=model_class, dataset=dataset, config_file_list=files, config_dict=config_dict)
        except ValueError as error:
            # RecBole insists on train_neg_sample_args=None for CE models but its overall.yaml
            # sets a sampler: drop the default unless the user asked for one.
            user_keys = set(config_dict) | set(file_keys)
            if "train_neg_sample_args" in user_keys or "when the loss_type is CE" not in str(error):
                raise
            config_dict["train_neg_sample_args"] = None
            config = Config(model=model_class, dataset=dataset, config_file_list=files, config_dict=config_dict)
    if config["strict_properties"]:
        check_property_names(list(config_dict), "the command line / config_dict")
        check_property_names(file_keys, "the property files")
    if dataset != "ml-100k":  # RecBole itself always reads ml-100k from its wheel
        requested_root = os.path.dirname(os.path.normpath(config["data_path"]))
        root = find_dataset_root(dataset, requested_root, allow_download=allow_download)
        config["data_path"] = os.path.join(root, dataset)
    return config


def peak_memory_mib():
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unique_checkpoint_path(config):
    """RecBole names checkpoints by the second; two runs in one second would overwrite."""
    name = f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth"
    return os.path.join(config["checkpoint_dir"], name)


def item_parameter_counts(model):
    """Item-embedding size: the plugin models report theirs; RecBole's have an ``item_embedding``."""
    counts = getattr(model, "parameter_counts", None)
    if counts is not None:
        return dict(counts)
    table = getattr(model, "item_embedding", None)
    if isinstance(table, torch.nn.Embedding):
        return {"item_embedding": table.weight.numel()}
    return {}


def time_train_epochs(trainer):
    """Record the wall time of each training epoch (evaluation excluded) into the returned list."""
    seconds = []
    train_epoch = trainer._train_epoch

    def timed_train_epoch(*args, **kwargs):
        start = time.time()
        result = train_epoch(*args, **kwargs)
        seconds.append(time.time() - start)
        return result

    trainer._train_epoch = timed_train_epoch
    return seconds


def run(model, dataset, config_file_list=None, config_dict=None, saved=True):
    """Train and test one model on one dataset; returns metrics, timings and the checkpoint."""
    config = build_config(model, dataset, config_file_list, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.saved_model_file = unique_checkpoint_path(config)
    epoch_seconds = time_train_epochs(trainer)
    with fast_sampled_evaluation(config, model):
        start = time.time()
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
        train_seconds = time.time() - start
        start = time.time()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        test_seconds = time.time() - start

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result),
        "model_file": trainer.saved_model_file if saved else None,
        "train_seconds": train_seconds,
        "test_seconds": test_seconds,
        "train_epoch_seconds": epoch_seconds,
        "parameter_counts": item_parameter_counts(model),
        "peak_memory_mib": peak_memory_mib(),
    }


def fast_sampled_evaluation(config, model):
    """Context in which sampled evaluation (uniN / popN) scores each distinct history once
    (recbole_usr/evaluation/sampled_from_full_sort.py); property
    ``sampled_eval_from_full_sort``, on by default. Full ranking is untouched."""
    modes = config["eval_args"]["mode"]
    modes = modes.values() if isinstance(modes, dict) else [modes]
    if config["sampled_eval_from_full_sort"] is False or all(mode == "full" for mode in modes):
        return contextlib.nullcontext()
    return sampled_predict_from_full_sort(model)


def set_eval_mode(config, mode):
    """Evaluate valid and test with ``mode`` (``full``, ``uniN``, ``popN``), as if
    ``eval_args: {mode: ...}`` had been set: RecBole derives its samplers from it."""
    if not (mode == "full" or (mode[:3] in ("uni", "pop") and mode[3:].isdigit())):
        raise ValueError(f"Unknown evaluation mode '{mode}': use full, uniN or popN (e.g. uni99).")
    config["eval_args"] = {**config["eval_args"], "mode": {"valid": mode, "test": mode}}
    for phase in ("valid", "test"):
        config._set_eval_neg_sample_args(phase)


def load_data_and_model(model_file, eval_mode=None):
    """Rebuild config, data and model from a checkpoint written by :func:`run` (any model).

    ``eval_mode`` (e.g. ``uni99``) rebuilds the evaluation data under another protocol, so
    a model trained once can be tested with full ranking and with sampled negatives.
    """
    if not os.path.isfile(model_file):
        raise FileNotFoundError(f"No checkpoint at '{model_file}'.")
    checkpoint = load_checkpoint(model_file)  # a file the caller named: full unpickling, here only
    config = checkpoint["config"]
    if eval_mode:
        set_eval_mode(config, eval_mode)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
