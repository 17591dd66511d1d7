"""Residual-quantisation tokenizer: items' text embeddings -> semantic IDs.

Small interchangeable parts: ``distances`` (how a level compares vectors), ``kmeans``
(codebook initialisation), ``rq_tokenizer`` (the model and its training loop), ``unique_codes`` (a collision-free
last level) and
``codebook_stats`` (how good a code table is as an ID scheme).
"""

from recbole_usr.quantization.codebook_stats import (
    append_dedup_level,
    codebook_statistics,
    degenerate_code_warnings,
    format_stats_table,
)
from recbole_usr.quantization.distances import (
    CosineDistance,
    Distance,
    EuclideanDistance,
    get_distance,
    resolve_distances,
    scheme_name,
)
from recbole_usr.quantization.kmeans import kmeans, kmeans_plus_plus
from recbole_usr.quantization.rq_tokenizer import CodebookLevel, RQOutput, RQTokenizer, fit_tokenizer
from recbole_usr.quantization.unique_codes import unique_last_codes

__all__ = [
    "RQTokenizer",
    "RQOutput",
    "CodebookLevel",
    "fit_tokenizer",
    "Distance",
    "CosineDistance",
    "EuclideanDistance",
    "get_distance",
    "resolve_distances",
    "scheme_name",
    "kmeans",
    "kmeans_plus_plus",
    "codebook_statistics",
    "degenerate_code_warnings",
    "append_dedup_level",
    "unique_last_codes",
    "format_stats_table",
]
