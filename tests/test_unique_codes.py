"""Tests of the collision-free last level (recbole_usr/quantization/unique_codes.py)."""

import pytest
import torch

from recbole_usr import semantic_id_artifact as artifacts
from recbole_usr.quantization import CodebookLevel, codebook_statistics, unique_last_codes


def euclidean_level(codewords):
    level = CodebookLevel(len(codewords), 2, "euclidean")
    level.set_codewords(torch.tensor(codewords))
    return level


LEVEL_CODEWORDS = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
# Squared distances to codewords 0 / 1 / 2: a .01 .81 1.01, b .0425 .6425 .9425, c .82 .02 1.62.
# a and b both pick codeword 0; the cheapest distinct matching is a0 b2 c1 (.9725), next a2 b0 c1 (1.0725).
RESIDUALS = torch.tensor([[0.1, 0.0], [0.2, 0.05], [0.9, 0.1]])


def test_colliding_items_get_the_cheapest_distinct_matching():
    level = euclidean_level(LEVEL_CODEWORDS)
    same_prefix = torch.zeros(3, 2, dtype=torch.long)
    assert level.assign(RESIDUALS).tolist() == [0, 0, 1]
    assert unique_last_codes(RESIDUALS, same_prefix, level).tolist() == [0, 2, 1]


def test_groups_are_matched_separately_and_lone_items_keep_their_nearest():
    level = euclidean_level(LEVEL_CODEWORDS)
    residual = torch.cat([RESIDUALS, RESIDUALS[:1]])
    prefix = torch.tensor([[0, 0], [0, 0], [0, 0], [5, 1]])  # the fourth item is alone in its prefix
    assert unique_last_codes(residual, prefix, level).tolist() == [0, 2, 1, 0]


def test_items_fitted_on_are_matched_first_and_never_displaced():
    level = euclidean_level(LEVEL_CODEWORDS)
    same_prefix = torch.zeros(3, 2, dtype=torch.long)
    # b first: it keeps its nearest codeword 0; a and c share {1, 2}: a2 c1 (1.03) beats a1 c2 (2.43).
    first = torch.tensor([False, True, False])
    assert unique_last_codes(RESIDUALS, same_prefix, level, first).tolist() == [2, 0, 1]


def test_a_group_larger_than_the_codebook_keeps_nearest_codes_for_the_overflow():
    level = euclidean_level(LEVEL_CODEWORDS)
    residual = torch.cat([RESIDUALS, torch.tensor([[0.05, 0.0]])])
    codes = unique_last_codes(residual, torch.zeros(4, 2, dtype=torch.long), level)
    assert sorted(codes.tolist()) in ([0, 0, 1, 2], [0, 1, 1, 2], [0, 1, 2, 2])
    assert len(set(codes.tolist())) == 3  # as many distinct codes as the codebook has


@pytest.mark.parametrize("unique", [False, True])
def test_artifact_with_a_unique_last_level_separates_duplicate_texts(unique):
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(60, 16, generator=generator)
    text = torch.cat([torch.zeros(1, 16), base, base[:30]])  # items 61-90 repeat items 1-30's text exactly
    settings = {"semantic_dim": 8, "rq_hidden_sizes": [32], "rq_levels": 3, "rq_codebook_size": 8,
                "rq_distances": ["cosine", "cosine", "euclidean"], "rq_pretrain_epochs": 2, "rq_pretrain_batch_size": 32,
                "seed": 3, "rq_unique_last_level": unique}
    artifact = artifacts.fit_semantic_ids(settings, text, torch.arange(1, 91))
    stats = codebook_statistics(artifact.codes[1:], 8)
    if unique:
        assert stats["unique_coverage"] == 1.0
        plain = artifacts.fit_semantic_ids({**settings, "rq_unique_last_level": False}, text, torch.arange(1, 91))
        assert torch.equal(artifact.codes[:, :2], plain.codes[:, :2])  # the prefix is never touched
        groups = plain.codes[1:].unique(dim=0, return_inverse=True, return_counts=True)
        collides = groups[2][groups[1]] > 1
        prefixes = plain.codes[1:, :2].unique(dim=0, return_inverse=True)[1]
        calm = ~torch.isin(prefixes, prefixes[collides])  # no collision anywhere in the item's prefix group
        assert calm.sum() > 0 and torch.equal(artifact.codes[1:][calm], plain.codes[1:][calm])
    else:
        assert stats["unique_coverage"] <= 30 / 90  # exact duplicates always collide

