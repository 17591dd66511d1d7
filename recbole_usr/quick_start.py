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
from recbole.config import Config as RecBoleConfig
from recbole.data import data_preparation
from recbole.utils import get_local_time, init_logger, init_seed, set_color
from recbole.utils import argument_list

import recbole_usr  # noqa: F401  (compat + registration)
from recbole_usr.compat import load_checkpoint, recbole_future_warnings_silenced
from recbole_usr.config_checks import check_property_values, check_unused_properties
from recbole_usr.data.atomic_file_checks import check_atomic_files
from recbole_usr.data.cold_start import create_dataset  # RecBole's, plus the cold-item split
from recbole_usr.data.dataset_lookup import find_dataset_root
from recbole_usr import recbole_config
from recbole_usr.recbole_config import plugin_property_files
from recbole_usr.distributed import DeviceAwareConfig, gathered, run_processes, shared_value, wait_for_all_ranks
from recbole_usr.evaluation.sampled_from_full_sort import sampled_predict_from_full_sort
from recbole_usr.evaluation.seen_items import (
    PROTOCOL_NAMES,
    SeenItemMask,
    SeenShare,
    full_sort_scores_transformed,
    own_protocol,
    seen_items_removed,
)
from recbole_usr.quantization import degenerate_code_warnings
from recbole_usr.semantic_id_artifact import attach_checkpoint_semantic_ids, prepare_semantic_ids
from recbole_usr.shared_dirs import recbole_dirs_shared
from recbole_usr.trainer import named_losses
from recbole_usr.utils import get_model, get_trainer

RECBOLE_PROPERTIES_DIR = os.path.join(os.path.dirname(recbole.__file__), "properties")
# Keys RecBole sets itself or reads without listing them in a yaml.
EXTRA_KNOWN_KEYS = {"model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "device",
                    "local_rank", "nproc", "world_size", "offset", "ip", "port", "eval_type",
                    "single_spec", "train_neg_sample_args", "valid_neg_sample_args",
                    "test_neg_sample_args", "benchmark_filename", "neg_prefix", "numerical_features",
                    "discretization", "normalize_field", "normalize_all", "wandb_project",
                    "additional_feat_suffix", "preload_weight", "alias_of_user_id",
                    "alias_of_item_id", "alias_of_entity_id", "alias_of_relation_id"}


def known_property_names():
    """Every key of every RecBole and recbole-usr property yaml, plus RecBole's argument lists."""
    names = set(EXTRA_KNOWN_KEYS) | set(known_argument_names())
    for root in (RECBOLE_PROPERTIES_DIR, recbole_config.PROPERTIES_DIR):
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


def build_config(model, dataset, config_file_list=None, config_dict=None, allow_download=True,
                 used_properties=()):
    """A RecBole ``Config`` with the plugin's property files and the dataset located.

    ``used_properties``: properties the calling command reads whatever the model (e.g. the
    tokenizer's ``rq_*``), so they are never reported as another model's."""
    config_dict = dict(config_dict or {})
    model_class = get_model(model) if isinstance(model, str) else model
    model_name = model_class.__name__
    files = plugin_property_files(model_name, dataset) + list(config_file_list or [])
    file_keys = user_file_keys(config_file_list)
    # one rank of a multi-process run (recbole_usr.distributed): gloo on CPU, NCCL on GPU
    config_class = DeviceAwareConfig if "local_rank" in config_dict else RecBoleConfig
    with isolated_argv():
        try:
            config = config_class(model=model_class, dataset=dataset, config_file_list=files, config_dict=config_dict)
        except ValueError as error:
            # RecBole insists on train_neg_sample_args=None for CE models but its overall.yaml
            # sets a sampler: drop the default unless the user asked for one.
            user_keys = set(config_dict) | set(file_keys)
            if "train_neg_sample_args" in user_keys or "when the loss_type is CE" not in str(error):
                raise
            config_dict["train_neg_sample_args"] = None
            config = config_class(model=model_class, dataset=dataset, config_file_list=files, config_dict=config_dict)
    if config["strict_properties"]:
        check_property_names(list(config_dict), "the command line / config_dict")
        check_property_names(file_keys, "the property files")
    check_input_properties(config, [key for key in list(config_dict) + list(file_keys) if key not in used_properties])
    if dataset != "ml-100k":  # RecBole itself always reads ml-100k from its wheel
        requested_root = os.path.dirname(os.path.normpath(config["data_path"]))
        root = find_dataset_root(dataset, requested_root, allow_download=allow_download)
        config["data_path"] = os.path.join(root, dataset)
    config["data_path"] = check_atomic_files(config)  # a cleaned copy when malformed rows are dropped
    return config


def check_input_properties(config, user_keys):
    """Values in range and of the right type, and no property meant for another model."""
    check_property_values(config)
    check_unused_properties(config, user_keys, [RECBOLE_PROPERTIES_DIR, recbole_config.PROPERTIES_DIR],
                            EXTRA_KNOWN_KEYS | set(known_argument_names()))


def known_argument_names():
    names = []
    for group in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        names += getattr(argument_list, group, [])
    return names


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


def semantic_id_warnings(config, model):
    """Warnings when the model's semantic IDs are degenerate (property ``min_unique_coverage``),
    from the codes it ends with: the log says so and so does the results file."""
    stats = getattr(model, "codebook_stats", None)  # TIGER: its frozen IDs
    item_repr = getattr(model, "item_repr", None)
    if not isinstance(stats, dict) and item_repr is not None:
        stats = getattr(item_repr, "code_statistics", None) or item_repr.epoch_statistics()
    if not isinstance(stats, dict) or "unique_coverage" not in stats:
        return []
    return degenerate_code_warnings(stats, config["min_unique_coverage"], f"{config['model']} semantic IDs")


# codebook statistics kept per training epoch, by the name ``epoch_statistics()`` gives them -> the results key:
# health before re-seeding and codewords re-seeded (rq_end_to_end_restarts), learned cosine weights
# (rq_distances: learned), per-level code churn (end-to-end training)
CODEBOOK_EPOCH_KEYS = {"activation": "codebook_activation", "natural_activation": "codebook_natural_activation",
                       "restarted": "restarted_codewords", "cosine_weight": "codebook_cosine_weight",
                       "code_churn_by_level": "code_churn_by_level"}


def record_epochs(trainer):
    """Record, per training epoch, its wall time, its losses by name (``train_losses``) and,
    for a trainer keeping ``codebook_history``, the statistics of ``CODEBOOK_EPOCH_KEYS`` it
    logged; per validation, its score, full result, epoch and finishing time (seconds since
    the first epoch started). Returns the dict of lists it fills."""
    log = {"train_epoch_seconds": [], "train_losses": {}, **{key: [] for key in CODEBOOK_EPOCH_KEYS.values()},
           "valid_scores": [], "valid_results": [], "valid_epochs": [], "valid_done_seconds": []}
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch
    started = []

    def timed_train_epoch(*args, **kwargs):
        start = time.time()
        started.append(start)
        result = train_epoch(*args, **kwargs)
        log["train_epoch_seconds"].append(time.time() - start)
        for name, value in named_losses(trainer.model, result).items():
            log["train_losses"].setdefault(name, []).append(value)
        history = getattr(trainer, "codebook_history", None)
        if history and len(history) > len(log["codebook_activation"]):
            for stat, key in CODEBOOK_EPOCH_KEYS.items():
                if stat in history[-1]:
                    value = history[-1][stat]
                    log[key].append(list(value) if isinstance(value, (list, tuple)) else value)
        return result

    def scored_valid_epoch(*args, **kwargs):
        score, result = valid_epoch(*args, **kwargs)
        log["valid_scores"].append(float(score))
        log["valid_results"].append({key: float(value) for key, value in dict(result).items()})
        log["valid_epochs"].append(len(log["train_epoch_seconds"]) - 1)
        log["valid_done_seconds"].append(time.time() - started[0] if started else 0.0)
        return score, result

    trainer._train_epoch, trainer._valid_epoch = timed_train_epoch, scored_valid_epoch
    return log


def best_epoch_summary(log, bigger_is_better=True):
    """``{best_valid_index, seconds_to_best_valid}``: when the kept checkpoint was scored."""
    scores = log["valid_scores"]
    if not scores:
        return {"best_valid_index": None, "seconds_to_best_valid": None}
    best = max(range(len(scores)), key=lambda i: scores[i] if bigger_is_better else -scores[i])  # first best, as RecBole
    return {"best_valid_index": best, "seconds_to_best_valid": log["valid_done_seconds"][best]}


def build_model(config, train_dataset, stored_semantic_ids=None):
    """The model on ``config['device']``; a model that reads semantic IDs gets the artifact
    first, outside its constructor: the checkpoint's (``stored_semantic_ids``: no refit, the
    item text checked) or the cached / newly fitted one (recbole_usr/semantic_id_artifact.py)."""
    model_class = get_model(config["model"])
    if stored_semantic_ids is not None:
        attach_checkpoint_semantic_ids(config, train_dataset, stored_semantic_ids)
    elif getattr(model_class, "uses_semantic_ids", None) and model_class.uses_semantic_ids(config):
        # drawn on a private RNG: the model's initialisation below is the same with or without a cache hit
        prepare_semantic_ids(config, train_dataset)
    return model_class(config, train_dataset).to(config["device"])


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1, ip="localhost",
        port="5678", group_offset=0):
    """Train and test one model on one dataset; returns metrics, timings and the checkpoint.

    ``nproc`` > 1 (or ``world_size`` > 0) trains with RecBole's multi-process mechanism
    (:mod:`recbole_usr.distributed`), ``world_size`` processes in all, ``nproc`` of them here."""
    if (nproc > 1 or world_size > 0) and "local_rank" not in (config_dict or {}):
        if not saved:
            raise ValueError("a multi-process run must save its checkpoint: every rank tests the best one.")
        return run_processes(run, model, dataset, config_file_list, config_dict, nproc, world_size, ip, port,
                             group_offset)
    with recbole_dirs_shared():  # several runs (or ranks) may start in this working directory at once
        return train_and_test(model, dataset, config_file_list, config_dict, saved)


def train_and_test(model, dataset, config_file_list, config_dict, saved):
    """:func:`run`'s work in this process (one rank of a multi-process run, or the only one)."""
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
    model = build_model(config, train_data._dataset)
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.saved_model_file = shared_value(unique_checkpoint_path(config), config)  # rank 0's, on every rank
    epoch_log = record_epochs(trainer)
    filter_seen = bool(config["filter_seen_items"])
    seen_mask = seen_item_mask(config, train_data, trainer.device)
    with fast_sampled_evaluation(config, model):
        start = time.time()
        with seen_items_removed(trainer, seen_mask if filter_seen else None), recbole_future_warnings_silenced():
            best_valid_score, best_valid_result = trainer.fit(
                train_data, valid_data, saved=saved, show_progress=config["show_progress"]
            )
        train_seconds = time.time() - start
        wait_for_all_ranks(config)  # rank 0 has written the best checkpoint every rank now loads
        start = time.time()
        test_by_protocol, seen_share = test_both_protocols(trainer, seen_mask, test_data, saved, config)
        test_result = test_by_protocol[own_protocol(config)]
        test_seconds = time.time() - start

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    other = PROTOCOL_NAMES[not filter_seen]
    if other in test_by_protocol:
        logger.info(set_color(f"test result [{other}]", "yellow") + f": {test_by_protocol[other]}")
    if seen_share:
        logger.info(set_color("seen items in the top k [history_kept]", "yellow") + f": {seen_share}")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result),
        "test_result_by_protocol": {name: dict(result) for name, result in test_by_protocol.items()},
        "protocol": own_protocol(config),
        "seen_share": seen_share,  # share of the top k that is the user's history, seen items kept
        "model_file": trainer.saved_model_file if saved else None,
        "train_seconds": train_seconds,
        **best_epoch_summary(epoch_log, config["valid_metric_bigger"]),
        "valid_scores": epoch_log["valid_scores"],
        "valid_results": epoch_log["valid_results"],
        "valid_epochs": epoch_log["valid_epochs"],
        "test_seconds": test_seconds,
        "train_epoch_seconds": epoch_log["train_epoch_seconds"],
        "train_losses": epoch_log["train_losses"],
        **{key: epoch_log[key] for key in CODEBOOK_EPOCH_KEYS.values()},
        "parameter_counts": item_parameter_counts(model),
        "peak_memory_mib": peak_memory_mib(),
        "peak_gpu_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "device": str(config["device"]),
        "torch_threads": torch.get_num_threads(),
        "warnings": semantic_id_warnings(config, model),
        "code_churn": list(getattr(trainer, "code_churn", [])),
        "stopped_by_time_budget": bool(getattr(trainer, "stopped_by_time_budget", False)),
        # training rows each process iterates per epoch (RecBole shards them; the global batch stays train_batch_size)
        "train_rows_per_rank": gathered(len(train_data.sampler), config),
    }


def seen_item_mask(config, train_data, device):
    """The :class:`SeenItemMask` the run's protocols need: to remove seen items
    (``filter_seen_items``) or to test full ranking under both protocols; else ``None``."""
    if config["filter_seen_items"] or eval_modes(config)["test"] == "full":
        return SeenItemMask(train_data._dataset, device)
    return None


def test_both_protocols(trainer, seen_mask, test_data, load_best_model, config):
    """``(results, seen_share)``: test metrics with the user's seen items kept in the ranking
    (RecBole) and removed (RecTools / eSASRec; ``seen_mask``), so every number can be
    compared like for like, and how much of the kept protocol's top k is seen items
    (:class:`SeenShare`; ``None`` without full ranking). Sampled protocols never rank seen
    items, so they get one entry."""
    results, seen_share = {}, None
    full_ranking = eval_modes(config)["test"] == "full"
    for filter_seen in (False, True) if full_ranking else (bool(config["filter_seen_items"]),):
        counter = SeenShare(seen_mask, config["topk"]) if full_ranking and not filter_seen else None
        counting = full_sort_scores_transformed(trainer, counter.count) if counter else contextlib.nullcontext()
        with seen_items_removed(trainer, seen_mask if filter_seen else None), counting:
            results[PROTOCOL_NAMES[filter_seen]] = trainer.evaluate(
                test_data, load_best_model=load_best_model, show_progress=config["show_progress"]
            )
        if counter:
            seen_share = counter.shares(gathered((counter.seen, counter.rows), config))
        load_best_model = False  # loaded once
    return results, seen_share


def eval_modes(config):
    """``{"valid": mode, "test": mode}`` from RecBole's ``eval_args.mode`` (one string or per phase)."""
    modes = config["eval_args"]["mode"]
    return dict(modes) if isinstance(modes, dict) else {"valid": modes, "test": modes}


def fast_sampled_evaluation(config, model):
    """Context in which sampled evaluation (uniN / popN) scores each distinct history once
    (recbole_usr/evaluation/sampled_from_full_sort.py); property
    ``sampled_eval_from_full_sort``, on by default. Full ranking is untouched."""
    if config["sampled_eval_from_full_sort"] is False or all(mode == "full" for mode in eval_modes(config).values()):
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
    with recbole_dirs_shared():
        init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train_data._dataset, (checkpoint.get("other_parameter") or {}).get("semantic_ids"))
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
