"""Model and trainer lookup: the plugin's classes first, then RecBole's (as RecBole-GNN does)."""

import importlib
import json
import sys

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_usr.model import PLUGIN_MODELS


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


def get_model(model_name):
    """Model class for ``model_name``: a plugin model, else any RecBole model."""
    if model_name in PLUGIN_MODELS:
        module = import_plugin_module(model_name)
        if module is not None:
            return getattr(module, model_name)
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError):  # an unknown name makes RecBole import its optional exlib deps
        raise ValueError(
            f"Unknown model '{model_name}': not a recbole-usr model ({', '.join(plugin_model_names())}) "
            "nor a RecBole model (see recbole.model)."
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


def write_results(path, result):
    """A command's results as JSON (numpy numbers included), when ``--results_file`` is given."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2, default=float)
