"""Generative retrieval building blocks: semantic IDs, the prefix trie over them and the
beam search it constrains (used by :mod:`recbole_usr.model.sequential_recommender.tiger`)."""

from recbole_usr.model.generative.beam_search import BeamSearchOutput, constrained_beam_search
from recbole_usr.model.generative.prefix_trie import PrefixTrie
from recbole_usr.model.generative.semantic_ids import SemanticIDs, build_semantic_ids

__all__ = ["PrefixTrie", "constrained_beam_search", "BeamSearchOutput", "SemanticIDs", "build_semantic_ids"]
