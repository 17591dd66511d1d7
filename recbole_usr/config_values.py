"""One way to read an optional property.

Why: ``config[key] or default`` turns a legitimate 0, 0.0 or False into the default
(``id_dim: 0``, ``rq_pretrain_epochs: 0``, ``rq_kmeans_init: False``).
"""


def config_value(config, key, default):
    """``config[key]``, or ``default`` only when the key is missing or set to None (``~``)."""
    try:
        value = config[key]
    except (KeyError, TypeError):
        value = None
    return default if value is None else value
