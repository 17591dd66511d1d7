"""What every generative retriever here shares (TIGER, SIDDecoder): each item's unique
semantic-ID path, the prefix trie over the paths, the beam width check, and turning a beam
into RecBole's full-ranking score matrix.

Why one place: the paths must be the same tensor the trie is built from and that a
checkpoint carries, and the score matrix must give ``-inf`` to every item outside the beam
in the same way, whichever model generated it.
"""

import torch

from recbole_usr.model.generative.prefix_trie import PrefixTrie
from recbole_usr.model.generative.semantic_ids import build_semantic_ids


class GeneratesItemPaths:
    """Mixin for an ``nn.Module`` recommender that generates items as semantic-ID paths."""

    def init_item_paths(self, config, dataset):
        """``beam_size`` (checked against ``topk``), ``item_codes`` ``[n_items, D]`` (a buffer:
        checkpoints carry the paths), ``depth``, ``codebook_size`` and the trie."""
        self.beam_size = int(config["beam_size"])
        largest_topk = max(config["topk"]) if config["topk"] else 0
        if self.beam_size < largest_topk:
            raise ValueError(
                f"beam_size={self.beam_size} is smaller than the largest topk ({largest_topk}): full ranking "
                f"would rank items outside the beam by ties at -inf. Set beam_size >= {largest_topk}."
            )
        semantic_ids = build_semantic_ids(config, dataset)
        self.depth = semantic_ids.codes.shape[1]
        self.codebook_size = semantic_ids.vocab_sizes[0]
        self.register_buffer("item_codes", semantic_ids.codes)  # row 0 (padding) names no item
        self.codebook_stats = semantic_ids.stats
        self.trie = self.build_trie(self.item_codes)
        self.register_load_state_dict_post_hook(GeneratesItemPaths._rebuild_trie_after_load)

    def build_trie(self, item_codes):
        n_items = item_codes.shape[0]
        trie = PrefixTrie(item_codes[1:].cpu(), item_ids=torch.arange(1, n_items),
                          vocab_sizes=[self.codebook_size] * self.depth)
        return trie.to(item_codes.device)

    @staticmethod
    def _rebuild_trie_after_load(module, incompatible_keys):
        """A checkpoint brings its own ``item_codes``: rebuild the trie from them."""
        module.trie = module.build_trie(module.item_codes)

    def beam_scores(self, beam, rows=None, scores=None):
        """``[B, n_items]``: each beam item's path log-probability, ``-inf`` elsewhere (and for padding).

        With ``rows``, the beam fills those rows of ``scores``; dead beams (item -1, score -inf)
        land on the padding column, which stays ``-inf``.
        """
        if scores is None:
            scores = torch.full((beam.items.shape[0], self.n_items), float("-inf"), device=beam.items.device)
        target = scores if rows is None else scores[rows]
        target = target.scatter(1, beam.items.clamp(min=0), beam.scores)
        target[:, 0] = float("-inf")
        if rows is None:
            return target
        scores[rows] = target
        return scores
