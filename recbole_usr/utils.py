"""Model and trainer lookup: the plugin's classes first, then RecBole's (as RecBole-GNN does)."""

import difflib
import functools
import importlib
import json
import os
import sys
import tempfile
from logging import getLogger

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_usr.cache_files import atomic_output
from recbole_usr.model import PLUGIN_MODELS

# RecBole's model packages (exlib_recommender is left out: it imports optional libraries).
RECBOLE_MODEL_PACKAGES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
                          "knowledge_aware_recommender")


def import_plugin_module(name):
    """The module of plugin model ``name``, or None while that model is not in this release."""
    path = PLUGIN_MODELS[name]
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as error:
        if error.name == path:
            return None
        raise


def plugin_model_names():
    return [name for name in PLUGIN_MODELS if import_plugin_module(name) is not None]


@functools.lru_cache(maxsize=None)
def all_model_names():
    """Every model name, the plugin's first, then RecBole's (for lookups and suggestions)."""
    from recbole.model.abstract_recommender import AbstractRecommender

    names = plugin_model_names()
    for package in RECBOLE_MODEL_PACKAGES:
        module = importlib.import_module(f"recbole.model.{package}")
        names += [name for name, value in vars(module).items()
                  if isinstance(value, type) and issubclass(value, AbstractRecommender) and name not in names]
    return tuple(names)


def get_model(model_name):
    """Model class for ``model_name``: a plugin model, else any RecBole model.

    Names match case-insensitively (with a warning giving the right spelling, which RecBole's
    own lookup needs); an unknown name is an error suggesting the closest names.
    """
    if model_name in PLUGIN_MODELS:
        module = import_plugin_module(model_name)
        if module is not None:
            return getattr(module, model_name)
    names = all_model_names()
    if model_name not in names:
        same = [name for name in names if name.lower() == str(model_name).lower()]
        if same:
            getLogger().warning(f"Model '{model_name}' taken as '{same[0]}' (model names are case-sensitive).")
            return get_model(same[0])
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError, AttributeError):  # an unknown name makes RecBole import its optional exlib deps
        lower = {name.lower(): name for name in names}
        close = [lower[name] for name in difflib.get_close_matches(str(model_name).lower(), list(lower), n=3)]
        hint = f" Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
        raise ValueError(
            f"Unknown model '{model_name}': not a recbole-usr model ({', '.join(plugin_model_names())}) "
            f"nor a RecBole model (see recbole.model).{hint}"
        ) from None


def get_trainer(model_type, model_name):
    """The model's own trainer (``<Model>Trainer`` attribute of its module) or RecBole's."""
    if model_name in PLUGIN_MODELS:
        module = import_plugin_module(model_name)
        trainer = getattr(module, f"{model_name}Trainer", None) if module else None
        if trainer is not None:
            return trainer
    return recbole_get_trainer(model_type, model_name)


def register_with_recbole():
    """Make RecBole's own ``get_model``, ``create_dataset`` and ``get_trainer`` find our classes.

    RecBole looks models up as ``recbole.model.<kind>.<name lower>`` modules, datasets as
    ``recbole.data.dataset.<Model>Dataset`` and trainers as ``recbole.trainer.<Model>Trainer``;
    aliasing our modules there lets existing RecBole scripts (and pickled configs) use them.
    """
    import recbole.data.dataset
    import recbole.model.sequential_recommender
    import recbole.trainer

    for name in PLUGIN_MODELS:
        module = import_plugin_module(name)
        if module is None:
            continue
        alias = f"recbole.model.sequential_recommender.{name.lower()}"
        sys.modules.setdefault(alias, module)
        setattr(recbole.model.sequential_recommender, name, getattr(module, name))
        for suffix, target in (("Dataset", recbole.data.dataset), ("Trainer", recbole.trainer)):
            extra = getattr(module, name + suffix, None)
            if extra is not None:
                setattr(target, name + suffix, extra)


def check_results_file(path):
    """Fail before any training when ``--results_file`` cannot be written (missing folder,
    no permission, a directory), instead of after it, losing the results."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--results_file={path}: the folder {directory} does not exist.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"--results_file={path} is a directory; give a file name.")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".results-write-check-"):
            pass
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as error:
        raise PermissionError(f"--results_file={path} cannot be written: {error}") from None


def dump_results(path, result):
    with atomic_output(path) as temporary, open(temporary, "w") as f:
        json.dump(result, f, indent=2, default=float)


def write_results(path, result, fallback_path=None):
    """A command's results as JSON (numpy numbers included), when ``--results_file`` is given.

    If ``path`` cannot be written at the end after all (it was checked before training),
    the results go to ``fallback_path`` (beside the checkpoint) and the error names both
    files, so a finished run's results are never lost.
    """
    if not path:
        return None
    try:
        dump_results(path, result)
        return path
    except OSError as error:
        if not fallback_path:
            raise
        dump_results(fallback_path, result)
        raise OSError(f"Could not write --results_file={path} ({error}); the results are in {fallback_path}.") from error


def results_fallback_path(result, suffix="results"):
    """Where :func:`write_results` puts results it could not write: beside the checkpoint."""
    model_file = result.get("model_file") if isinstance(result, dict) else None
    if not model_file:
        return None
    return f"{os.path.splitext(model_file)[0]}.{suffix}.json"


def run_console_script(run_command, argv=None):
    """What every console script's ``main`` does: keep freed heap memory (entry points only,
    never at import; recbole_usr/malloc.py), run the command, return exit status 0. An
    exception exits non-zero; returning the command's result dict instead would make the
    console-script wrapper exit 1 with the dict on stderr."""
    from recbole_usr.malloc import keep_freed_memory

    keep_freed_memory()
    run_command(argv)
    return 0
