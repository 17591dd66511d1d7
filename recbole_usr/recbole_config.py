"""RecBole's own ``Config(model="UnifiedSASRec", ...)`` finds the plugin's property files.

Why: RecBole loads a model's defaults only from its own ``properties/model/``, so a plugin
model built the RecBole way got none of its defaults and failed far from the cause
(``Either Model has attr 'input_type' ...``, then ``'NoneType' and 'int'``). After
RecBole's internal files, the plugin's ``overall.yaml``, model yaml and dataset yaml are
loaded too, at the same precedence ``recbole_usr.quick_start.build_config`` gives them:
above RecBole's defaults, below the user's files and ``config_dict``.
"""

import os

from recbole_usr.model import PLUGIN_MODELS

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")


def plugin_property_files(model_name, dataset):
    """The plugin's yaml files for this run, lowest precedence first."""
    candidates = [
        os.path.join(PROPERTIES_DIR, "overall.yaml"),
        os.path.join(PROPERTIES_DIR, "model", f"{model_name}.yaml"),
        os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
    ]
    return [path for path in candidates if os.path.isfile(path)]


def load_plugin_properties_in_recbole_config():
    """Extend ``Config._load_internal_config_dict`` (once) for the plugin's models only."""
    from recbole.config import Config

    original = Config._load_internal_config_dict
    if getattr(original, "loads_recbole_usr_properties", False):
        return

    def _load_internal_config_dict(self, model, model_class, dataset):
        original(self, model, model_class, dataset)
        if model in PLUGIN_MODELS:
            for path in plugin_property_files(model, dataset):
                self._update_internal_config_dict(path)

    _load_internal_config_dict.loads_recbole_usr_properties = True
    Config._load_internal_config_dict = _load_internal_config_dict
