"""How a sequence model turns item ids into vectors, chosen by the ``item_repr`` property.

Every representation is an ``nn.Module`` with ``from_config(config, dataset)``, ``.dim``, a
``forward()`` returning the whole item table ``[n_items, dim]`` (row 0 = padding, zeros) and
a dict of named auxiliary losses (one table both embeds the input sequence and scores the
candidates), ``describe()`` (parameter counts, with ``serving_size`` and ``training_size``)
and ``epoch_statistics()`` (numbers worth logging per epoch). One concept a module; this
one holds the registry.
"""

from logging import getLogger

from recbole_usr.config_values import config_value
from recbole_usr.model.item_representations.hashing import HashItemEmbedding
from recbole_usr.model.item_representations.id_table import IDItemEmbedding
from recbole_usr.model.item_representations.ngram import NGramItemEmbedding
from recbole_usr.model.item_representations.sentencepiece import SPMItemEmbedding
from recbole_usr.model.item_representations.unified import UnifiedItemEmbedding

ITEM_REPRESENTATIONS = {
    "unified": UnifiedItemEmbedding,
    "id": IDItemEmbedding,
    "ngram": NGramItemEmbedding,
    "spm": SPMItemEmbedding,
    "hash": HashItemEmbedding,
}


def is_deprecated_id_only(config):
    return (config_value(config, "item_repr", "unified") == "unified"
            and config_value(config, "use_semantic", True) is False)


def uses_semantic_ids(config):
    """Whether the representation ``config`` names reads the semantic-ID artifact."""
    representation = ITEM_REPRESENTATIONS.get(config_value(config, "item_repr", "unified"))
    return bool(getattr(representation, "uses_semantic_ids", False)) and not is_deprecated_id_only(config)


def build_item_representation(config, dataset):
    """The module named by ``item_repr`` (default ``unified``).

    ``use_semantic: False`` is the old spelling of ``item_repr: id`` (an ID table of width
    ``id_dim``); it still works, with a deprecation warning.
    """
    name = config_value(config, "item_repr", "unified")
    if is_deprecated_id_only(config):
        width = config_value(config, "id_dim", 8)
        getLogger().warning(
            f"use_semantic: False is deprecated; write item_repr: id with hidden_size: {width} "
            "(the ID-only table this setting builds)."
        )
        return IDItemEmbedding(dataset.item_num, width, config_value(config, "initializer_range", 0.02))
    if name not in ITEM_REPRESENTATIONS:
        raise ValueError(f"Unknown item_repr '{name}'. Available: {', '.join(ITEM_REPRESENTATIONS)}.")
    return ITEM_REPRESENTATIONS[name].from_config(config, dataset)


def log_parameter_counts(representation, logger=None):
    """The paper's "token size": item-embedding parameters against an ID table of the same width."""
    logger = logger or getLogger()
    counts = representation.describe()
    text = ", ".join(f"{key}={value:,}" for key, value in counts.items())
    if "item_embedding" in counts and counts.get("id_only_same_width_table"):
        ratio = counts["item_embedding"] / counts["id_only_same_width_table"]
        text += f" -> item embedding is {ratio:.1%} of an ID table of the same width ({1 - ratio:.1%} smaller)"
    logger.info(f"Item representation parameters: {text}")
    return counts
