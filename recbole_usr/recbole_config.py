"""RecBole's own ``Config(model="UnifiedSASRec", ...)`` finds the plugin's property files.

Why: RecBole loads a model's defaults only from its own ``properties/model/``, so a plugin
model built the RecBole way got none of its defaults and failed far from the cause
(``Either Model has attr 'input_type' ...``, then ``'NoneType' and 'int'``). After
RecBole's internal files, the plugin's ``overall.yaml``, model yaml and dataset yaml are
loaded too, at the same precedence ``recbole_usr.quick_start.build_config`` gives them:
above RecBole's defaults, below the user's files and ``config_dict``.
"""

from recbole_usr.model import PLUGIN_MODELS


def load_plugin_properties_in_recbole_config():
    """Extend ``Config._load_internal_config_dict`` (once) for the plugin's models only."""
    from recbole.config import Config

    original = Config._load_internal_config_dict
    if getattr(original, "loads_recbole_usr_properties", False):
        return

    def _load_internal_config_dict(self, model, model_class, dataset):
        original(self, model, model_class, dataset)
        if model in PLUGIN_MODELS:
            from recbole_usr.quick_start import plugin_property_files

            for path in plugin_property_files(model, dataset):
                self._update_internal_config_dict(path)

    _load_internal_config_dict.loads_recbole_usr_properties = True
    Config._load_internal_config_dict = _load_internal_config_dict
