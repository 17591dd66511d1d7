"""Semantic IDs for a catalogue: text embedding -> frozen RQ tokenizer -> unique code paths.

TIGER's first stage (Rajput et al., arXiv 2305.05065, Sec. 3.1): an RQ tokenizer is trained
alone on the items' text embeddings (k-means initialisation, then ``rq_pretrain_epochs`` of
reconstruction + quantisation loss) and frozen; each item's ``rq_levels`` codes are its
semantic ID. Items that share all ``L`` codes are told apart by one more level
(:func:`~recbole_usr.quantization.append_dedup_level`), so every item has a unique path of
``L + 1`` tokens. The extra level reuses the codebook size as its vocabulary, which keeps
the model's shapes independent of how many collisions a run happens to produce.
"""

from dataclasses import dataclass
from logging import getLogger

import torch

from recbole_usr.data.text_embedding import load_item_text_embeddings
from recbole_usr.quantization import RQTokenizer, append_dedup_level, codebook_statistics, fit_tokenizer
from recbole_usr.quantization import format_stats_table


@dataclass
class SemanticIDs:
    codes: torch.Tensor  # [n_items, L + 1] long; row 0 (padding item) is all zeros and names no item
    vocab_sizes: list  # tokens per level, L + 1 entries
    stats: dict  # codebook_statistics of the L tokenizer levels (before de-duplication)


def config_value(config, key, default):
    try:
        value = config[key]
    except (KeyError, TypeError):
        value = None
    return default if value is None else value


def train_tokenizer(config, item_text):
    """The RQ tokenizer, k-means initialised and trained alone on ``item_text`` [N, d], frozen."""
    tokenizer = RQTokenizer.from_config(config, in_dim=item_text.shape[1])
    generator_state = torch.get_rng_state()
    fit_tokenizer(
        tokenizer,
        item_text,
        epochs=int(config_value(config, "rq_pretrain_epochs", 0)),
        batch_size=int(config_value(config, "rq_pretrain_batch_size", 1024)),
        lr=float(config_value(config, "rq_pretrain_lr", 1e-3)),
        show_progress=bool(config_value(config, "show_progress", False)),
        seed=config_value(config, "seed", None),
        kmeans_init=bool(config_value(config, "rq_kmeans_init", True)),
        desc="TIGER RQ tokenizer",
    )
    torch.set_rng_state(generator_state)  # keep the recommender's initialisation seed-stable
    tokenizer.eval()
    tokenizer.requires_grad_(False)
    return tokenizer


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


def build_semantic_ids(config, dataset, item_text=None, logger=None):
    """Unique semantic IDs ``[dataset.item_num, L + 1]`` for RecBole's internal item ids; logs their stats."""
    logger = logger or getLogger()
    if item_text is None:
        item_text = load_item_text_embeddings(config, dataset)
    tokenizer = train_tokenizer(config, item_text[1:])
    codes = tokenizer.encode(item_text[1:])
    stats = codebook_statistics(codes, tokenizer.codebook_size)
    full = deduplicated_codes(codes, tokenizer.codebook_size)
    table = torch.cat([full.new_zeros(1, full.shape[1]), full])
    dedup_stats = codebook_statistics(full, tokenizer.codebook_size)
    logger.info(
        "TIGER semantic IDs (%d items, %d levels + de-duplication):\n%s",
        full.shape[0],
        tokenizer.n_levels,
        format_stats_table({"RQ codes": stats, "+ dedup level": dedup_stats}),
    )
    return SemanticIDs(codes=table, vocab_sizes=[tokenizer.codebook_size] * full.shape[1], stats=stats)
