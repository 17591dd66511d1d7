"""recbole-usr: unified semantic + ID item representations for RecBole.

Importing the package first makes RecBole 1.2.1 run on the current stack
(:mod:`recbole_usr.compat`), then registers the plugin's models with RecBole.
"""

from recbole_usr import compat  # noqa: F401  (must run before RecBole is used)

__version__ = "0.1.0"


def _register():
    import torch

    from recbole_usr.recbole_config import load_plugin_properties_in_recbole_config
    from recbole_usr.utils import register_with_recbole

    register_with_recbole()
    load_plugin_properties_in_recbole_config()  # Config(model="UnifiedSASRec") gets the plugin's yamls
    # RecBole's sine.py turns on autograd anomaly detection for the whole process when
    # recbole.model.sequential_recommender is imported: a NaN check on every backward pass
    # (~1.8x slower training steps). Turn it back off.
    torch.autograd.set_detect_anomaly(False)


_register()
