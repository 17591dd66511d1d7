"""Semantic IDs for a catalogue: text embedding -> frozen RQ tokenizer -> unique code paths.

TIGER's first stage (Rajput et al., arXiv 2305.05065, Sec. 3.1): an RQ tokenizer is trained
alone on the items' text embeddings (k-means initialisation, then ``rq_pretrain_epochs`` of
reconstruction + quantisation loss) and frozen; each item's ``rq_levels`` codes are its
semantic ID. The fit is the shared semantic-ID artifact (:mod:`recbole_usr.semantic_id_artifact`). Items that share all ``L`` codes are told apart by one more level
(:func:`~recbole_usr.quantization.append_dedup_level`), so every item has a unique path of
``L + 1`` tokens. The extra level reuses the codebook size as its vocabulary, which keeps
the model's shapes independent of how many collisions a run happens to produce.
"""

from dataclasses import dataclass
from logging import getLogger

import torch

from recbole_usr.quantization import append_dedup_level, codebook_statistics, format_stats_table
from recbole_usr.semantic_id_artifact import SemanticIDArtifact, semantic_ids_for


@dataclass
class SemanticIDs:
    codes: torch.Tensor  # [n_items, L + 1] long; row 0 (padding item) is all zeros and names no item
    vocab_sizes: list  # tokens per level, L + 1 entries
    stats: dict  # codebook_statistics of the L tokenizer levels (before de-duplication)
    artifact: SemanticIDArtifact  # where the L codes come from (saved in checkpoints)


def deduplicated_codes(codes, codebook_size):
    """``codes`` [N, L] plus the de-duplication level, checked to fit a vocabulary of ``codebook_size``."""
    full = append_dedup_level(codes)
    largest = int(full[:, -1].max()) + 1 if full.shape[0] else 0
    if largest > codebook_size:
        raise ValueError(
            f"{largest} items share one semantic ID, more than the de-duplication level's "
            f"{codebook_size} tokens: raise rq_levels or rq_codebook_size, or train the tokenizer longer."
        )
    return full


def build_semantic_ids(config, dataset, logger=None):
    """Unique semantic IDs ``[dataset.item_num, L + 1]`` for RecBole's internal item ids; logs their stats."""
    logger = logger or getLogger()
    artifact = semantic_ids_for(config, dataset)
    codes, codebook_size = artifact.codes[1:], artifact.codebook_size
    stats = codebook_statistics(codes, codebook_size)
    full = deduplicated_codes(codes, codebook_size)
    table = torch.cat([full.new_zeros(1, full.shape[1]), full])
    dedup_stats = codebook_statistics(full, codebook_size)
    logger.info(
        "TIGER semantic IDs (%d items, %d levels + de-duplication):\n%s",
        full.shape[0],
        codes.shape[1],
        format_stats_table({"RQ codes": stats, "+ dedup level": dedup_stats}),
    )
    return SemanticIDs(codes=table, vocab_sizes=[codebook_size] * full.shape[1], stats=stats, artifact=artifact)
