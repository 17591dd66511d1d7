"""Evaluation beyond RecBole's overall metrics: per-slice (popularity, cold-start) metrics."""

from recbole_usr.evaluation.slices import (
    DEFAULT_POPULARITY_SLICES,
    evaluate_slices,
    format_slice_table,
    metrics_from_ranks,
    popularity_slices,
    slice_metrics,
    target_ranks,
    training_item_counts,
)

__all__ = [
    "DEFAULT_POPULARITY_SLICES",
    "evaluate_slices",
    "format_slice_table",
    "metrics_from_ranks",
    "popularity_slices",
    "slice_metrics",
    "target_ranks",
    "training_item_counts",
]
