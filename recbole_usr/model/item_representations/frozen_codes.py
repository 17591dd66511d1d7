"""The frozen semantic IDs that the n-gram and SentencePiece representations read.

They are the semantic-ID artifact's codes (:mod:`recbole_usr.semantic_id_artifact`): the
same codes UnifiedSASRec starts from and TIGER uses, for the same properties. They are
stored as a buffer, so a checkpoint keeps the exact codes it was trained with.
"""

from logging import getLogger

from recbole_usr.semantic_id_artifact import semantic_ids_for


def frozen_codes(config, dataset):
    """``(codes [item_num, L] long, K, statistics)``; the statistics are logged once."""
    artifact = semantic_ids_for(config, dataset)
    stats = artifact.stats
    getLogger().info(
        f"Frozen semantic IDs: {stats['n_distinct']} distinct of {stats['n_items']} items, "
        f"unique coverage {stats['unique_coverage']:.3f}, largest collision {stats['max_collision']}, "
        f"per-level activation {[round(a, 3) for a in stats['activation']]}"
    )
    return artifact.codes.clone(), artifact.codebook_size, stats
