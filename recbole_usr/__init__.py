"""recbole-usr: unified semantic + ID item representations for RecBole.

Importing the package first makes RecBole 1.2.1 run on the current stack
(:mod:`recbole_usr.compat`), then registers the plugin's models with RecBole.
"""

from recbole_usr import compat

__version__ = "0.1.0"


def _register():
    from recbole_usr.recbole_config import load_plugin_properties_in_recbole_config
    from recbole_usr.utils import register_with_recbole

    register_with_recbole()
    load_plugin_properties_in_recbole_config()  # Config(model="UnifiedSASRec") gets the plugin's yamls


# RecBole's sine.py turns autograd anomaly detection on for the process when RecBole's model
# package is imported (~1.8x slower backward passes): keep the caller's setting instead.
with compat.keep_anomaly_detection():
    compat.apply()
    _register()
