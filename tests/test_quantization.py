"""Tests of recbole_usr.quantization: distances, k-means, the RQ tokenizer and code statistics."""

import math
from unittest import mock

import pytest
import torch

from recbole_usr.quantization import (
    CodebookLevel,
    RQTokenizer,
    append_dedup_level,
    codebook_statistics,
    fit_tokenizer,
    format_stats_table,
    get_distance,
    kmeans,
    resolve_distances,
)
from recbole_usr.quantization import rq_tokenizer as rq_module


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors on a shared 2-core machine run far faster on one thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def clustered(n_clusters=8, per_cluster=40, dim=16, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 3
    points = centres.repeat_interleave(per_cluster, 0) + spread * torch.randn(n_clusters * per_cluster, dim, generator=g)
    return points


def small_tokenizer(**kwargs):
    args = dict(in_dim=16, semantic_dim=8, hidden_sizes=(32,), n_levels=3, codebook_size=8)
    args.update(kwargs)
    return RQTokenizer(**args)


# ---- distances ---------------------------------------------------------------------------

def test_distances_match_hand_computed_values():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    c = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    s = 1 / math.sqrt(2)
    expected_cos = torch.tensor([[1.0, 0.0], [1 - s, 1 - s]])
    expected_euc = torch.tensor([[5.0, 4.0], [2.0, 5.0]])  # squared distances
    assert torch.allclose(get_distance("cosine").pairwise(x, c), expected_cos, atol=1e-6)
    assert torch.allclose(get_distance("euclidean").pairwise(x, c), expected_euc, atol=1e-6)


def test_cosine_of_zero_vector_is_finite():
    d = get_distance("cosine").pairwise(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.isfinite(d).all() and torch.allclose(d, torch.ones(1, 2))


def test_resolve_distances_schemes_and_lists():
    assert resolve_distances("hybrid", 3) == ["cosine", "cosine", "euclidean"]
    assert resolve_distances("cosine", 2) == ["cosine", "cosine"]
    assert resolve_distances("euclidean,cosine", 2) == ["euclidean", "cosine"]
    assert resolve_distances(["Cosine", "euclidean"], 2) == ["cosine", "euclidean"]
    with pytest.raises(ValueError):
        resolve_distances(["cosine"], 3)
    with pytest.raises(ValueError):
        get_distance("manhattan")


def test_cosine_and_euclidean_select_different_codes():
    # codeword 0 points the same way as r but is far; codeword 1 is near but at 29 degrees
    residual = torch.tensor([[1.0, 0.0]])
    codebook = torch.tensor([[10.0, 1.0], [0.9, 0.5]])
    chosen = {}
    for name in ("cosine", "euclidean"):
        level = CodebookLevel(2, 2, distance=name)
        level.set_codewords(codebook)
        chosen[name] = int(level.assign(residual))
    assert chosen == {"cosine": 0, "euclidean": 1}


# ---- k-means -----------------------------------------------------------------------------

def sse(points, centroids):
    return float(get_distance("euclidean").pairwise(points, centroids).min(1).values.sum())


def test_kmeans_beats_random_sample_init_and_is_seeded():
    x = clustered()
    torch.manual_seed(1)
    random_centroids, _ = kmeans(x, 8, "euclidean", n_iters=0, init="random")
    torch.manual_seed(1)
    centroids, assign = kmeans(x, 8, "euclidean", n_iters=20, init="kmeans++")
    assert sse(x, centroids) < 0.5 * sse(x, random_centroids)
    assert torch.bincount(assign, minlength=8).min() == 40  # the 8 true clusters recovered
    torch.manual_seed(1)
    again, _ = kmeans(x, 8, "euclidean", n_iters=20, init="kmeans++")
    assert torch.equal(centroids, again)


def test_kmeans_on_a_sample_fits_the_sample_and_assigns_every_row():
    x = clustered()  # 8 clusters x 40 points
    # A cap at or above N changes nothing, RNG use included.
    full, full_assign = kmeans(x, 8, "euclidean", generator=torch.Generator().manual_seed(3))
    capped, capped_assign = kmeans(x, 8, "euclidean", generator=torch.Generator().manual_seed(3), max_points=320)
    assert torch.equal(full, capped) and torch.equal(full_assign, capped_assign)
    # Below N: the centroids are those of k-means on the drawn rows alone ...
    centroids, assign = kmeans(x, 8, "euclidean", generator=torch.Generator().manual_seed(3), max_points=64)
    generator = torch.Generator().manual_seed(3)
    rows = torch.randperm(320, generator=generator)[:64]
    on_sample, _ = kmeans(x[rows], 8, "euclidean", generator=generator)
    assert torch.equal(centroids, on_sample)
    # ... and every row, drawn or not, goes to its nearest centroid.
    assert assign.shape == (320,)
    assert torch.equal(assign, get_distance("euclidean").pairwise(x, centroids).argmin(1))
    with pytest.raises(ValueError, match="max_points"):
        kmeans(x, 8, max_points=-1)


def test_tokenizer_kmeans_sample_is_per_codeword():
    x = clustered(n_clusters=4, per_cluster=30)
    seen = []
    original = rq_module.kmeans

    def spy(residual, k, *args, **kwargs):
        seen.append(kwargs["max_points"])
        return original(residual, k, *args, **kwargs)

    tok = RQTokenizer(in_dim=16, semantic_dim=8, hidden_sizes=[16], n_levels=2, codebook_size=4, distances="cosine")
    with mock.patch.object(rq_module, "kmeans", spy):
        tok.init_codebooks(x, points_per_centroid=5, generator=torch.Generator().manual_seed(0))
    assert seen == [20, 20]  # 5 points x 4 codewords, each level


def test_spherical_kmeans_gives_unit_centroids_and_handles_fewer_points_than_k():
    x = clustered(n_clusters=3, per_cluster=2)
    centroids, assign = kmeans(x, 10, "cosine", n_iters=5)
    assert centroids.shape == (10, 16) and torch.isfinite(centroids).all()
    assert torch.allclose(centroids.norm(dim=1), torch.ones(10), atol=1e-5)
    assert assign.shape == (6,)


def test_kmeans_init_lowers_quantisation_error_versus_random_codebooks():
    x = clustered(n_clusters=16, per_cluster=20)

    @torch.no_grad()
    def quantisation_error(tok):
        tok.eval()
        latent = tok.encoder(x)
        quantized, _, _, _ = tok.quantize(latent)
        return float((latent - quantized).pow(2).sum(1).mean())

    for distances in ("euclidean", "hybrid"):
        torch.manual_seed(0)
        random_init = small_tokenizer(codebook_size=16, distances=distances)
        torch.manual_seed(0)
        kmeans_init = small_tokenizer(codebook_size=16, distances=distances)
        kmeans_init.init_codebooks(x)
        assert bool(kmeans_init.initialized) and not bool(random_init.initialized)
        assert quantisation_error(kmeans_init) < 0.5 * quantisation_error(random_init)


# ---- the tokenizer -----------------------------------------------------------------------

def test_forward_shapes_losses_and_value_of_quantized():
    torch.manual_seed(0)
    tok = small_tokenizer()
    x = clustered()[:50]
    tok.init_codebooks(x)
    out = tok(x)
    assert out.codes.shape == (50, 3) and out.codes.dtype == torch.long
    assert out.quantized.shape == out.latent.shape == (50, 8)
    assert out.reconstruction.shape == x.shape
    for loss in (out.codebook_loss, out.commitment_loss, out.recon_loss, out.quantization_loss):
        assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.allclose(out.quantization_loss, out.codebook_loss + out.commitment_loss)
    # the value of `quantized` is the sum of the codewords the codes stand for
    assert torch.allclose(out.quantized, tok.embed_codes(out.codes), atol=1e-5)


def test_straight_through_gradient_reaches_encoder():
    torch.manual_seed(0)
    tok = small_tokenizer()
    x = clustered()[:50]
    tok.init_codebooks(x)
    out = tok(x)
    # a downstream-only loss: only the quantised vectors, as a recommender would use them
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    for p in tok.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(level.codebook.grad is None for level in tok.levels)


def test_commitment_and_codebook_losses_train_their_own_parts():
    torch.manual_seed(0)
    tok = small_tokenizer(beta=0.25)
    x = clustered()[:50]
    out = tok(x)
    out.codebook_loss.backward(retain_graph=True)
    assert all(level.codebook.grad.abs().sum() > 0 for level in tok.levels)
    assert all(p.grad is None for p in tok.encoder.parameters())
    tok.zero_grad()
    out.commitment_loss.backward()
    assert all(level.codebook.grad is None or level.codebook.grad.abs().sum() == 0 for level in tok.levels)
    assert any(p.grad.abs().sum() > 0 for p in tok.encoder.parameters())


def test_zero_inputs_give_finite_values_and_gradients():
    torch.manual_seed(0)
    for mode in ("raw", "unit"):
        tok = small_tokenizer(distances="cosine", hidden_sizes=(), cosine_codewords=mode)
        with torch.no_grad():
            for p in tok.encoder.parameters():
                p.zero_()  # latent is exactly zero
        out = tok(torch.zeros(4, 16))
        (out.recon_loss + out.quantization_loss + out.quantized.sum()).backward()
        assert torch.isfinite(out.quantized).all()
        assert all(torch.isfinite(p.grad).all() for p in tok.parameters() if p.grad is not None)


def test_unit_mode_passes_on_residual_minus_unit_codeword():
    torch.manual_seed(0)
    tok = small_tokenizer(distances="cosine", cosine_codewords="unit")
    x = clustered()[:50]
    tok.init_codebooks(x)
    tok.eval()
    out = tok(x)
    first = tok.levels[0].codewords()[out.codes[:, 0]]
    assert torch.allclose(first.norm(dim=1), torch.ones(50), atol=1e-5)
    residual_2 = out.latent - first
    assert torch.equal(tok.levels[1].assign(residual_2), out.codes[:, 1])
    assert torch.allclose(out.quantized, tok.embed_codes(out.codes), atol=1e-5)


def test_encode_matches_eval_forward_and_changes_no_state():
    torch.manual_seed(0)
    tok = small_tokenizer(dead_code_steps=1, dropout=0.3)
    x = clustered()[:60]
    tok.init_codebooks(x)
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    codes = tok.encode(x, batch_size=7)
    assert tok.training  # mode restored
    for k, v in tok.state_dict().items():
        assert torch.equal(v, before[k]), k
    tok.eval()
    assert torch.equal(codes, tok(x).codes)


def test_dead_codes_are_reseeded_from_current_residuals():
    level = CodebookLevel(4, 2, distance="euclidean", dead_code_steps=2)
    far = torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]])
    level.set_codewords(far)
    residual = 0.1 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    level.train()
    level(residual)
    level(residual)
    assert torch.equal(level.unused_steps, torch.tensor([0, 2, 2, 2]))
    assert torch.equal(level.codebook.detach(), far)  # not yet: restart happens at the next step
    torch.manual_seed(0)
    codes, _, _, _ = level(residual)
    new = level.codebook.detach()
    assert torch.equal(new[0], far[0])
    for k in (1, 2, 3):  # each dead codeword is now one of the residuals, a different one each
        assert (new[k] == residual).all(dim=1).any()
    assert torch.unique(new[1:], dim=0).shape[0] == 3
    assert int(level.unused_steps.max()) <= 1  # counters of re-seeded codewords start again
    assert len(set(codes.tolist())) > 1  # and the re-seeded codewords get used at once
    # same seed -> same re-seeding
    level2 = CodebookLevel(4, 2, distance="euclidean", dead_code_steps=2)
    level2.set_codewords(far)
    level2.train()
    level2(residual)
    level2(residual)
    torch.manual_seed(0)
    level2(residual)
    assert torch.equal(level2.codebook.detach(), new)


def test_dead_code_restart_disabled_and_inactive_in_eval():
    far = torch.tensor([[0.0, 0.0], [100.0, 100.0]])
    residual = 0.1 * torch.randn(8, 2)
    off = CodebookLevel(2, 2, dead_code_steps=0)
    off.set_codewords(far)
    off.train()
    evaluated = CodebookLevel(2, 2, dead_code_steps=1)
    evaluated.set_codewords(far)
    evaluated.eval()
    for _ in range(5):
        off(residual)
        evaluated(residual)
    assert torch.equal(off.codebook.detach(), far) and torch.equal(evaluated.codebook.detach(), far)


def test_ema_updates_codebook_without_codebook_loss():
    torch.manual_seed(0)
    level = CodebookLevel(2, 2, distance="euclidean", use_ema=True, ema_decay=0.5)
    level.set_codewords(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert not level.codebook.requires_grad
    residual = torch.tensor([[3.0, 0.0], [3.0, 0.0], [-1.0, 0.0]])
    level.train()
    for _ in range(20):
        _, _, codebook_loss, _ = level(residual)
        assert float(codebook_loss) == 0.0
    assert torch.allclose(level.codebook[0], torch.tensor([3.0, 0.0]), atol=1e-3)
    assert torch.allclose(level.codebook[1], torch.tensor([-1.0, 0.0]), atol=1e-3)


def test_from_config_reads_keys_and_defaults_missing_ones():
    class MissingIsNone(dict):  # RecBole's Config returns None for a missing key
        def __getitem__(self, key):
            return self.get(key)

    config = MissingIsNone(rq_levels=2, rq_codebook_size=16, rq_distances="cosine", semantic_dim=8,
                           rq_hidden_sizes=[32], rq_dead_code_steps=5, rq_use_ema=True)
    tok = RQTokenizer.from_config(config, in_dim=16)
    assert tok.distances == ["cosine", "cosine"] and tok.codebook_size == 16 and tok.semantic_dim == 8
    assert tok.levels[0].dead_code_steps == 5 and tok.levels[0].use_ema and tok.beta == 0.25
    default = RQTokenizer.from_config({}, in_dim=16)
    assert default.distances == ["cosine", "cosine", "euclidean"] and default.codebook_size == 256


def test_fit_is_deterministic_under_seed_and_lowers_loss():
    x = clustered(n_clusters=8, per_cluster=25)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        tok = small_tokenizer(dead_code_steps=2)
        generator = torch.Generator().manual_seed(3)
        history = fit_tokenizer(tok, x, epochs=6, batch_size=64, lr=3e-3, show_progress=False, generator=generator)
        runs.append((tok.encode(x), history))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    history = runs[0][1]
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
    assert set(history[0]) == {"loss", "recon", "codebook", "commitment", "restarted"}
    # no restart after the last epoch: the codes read after the fit were not just re-seeded
    assert "restarted" not in history[-1]


def test_no_per_step_restart_in_the_last_epoch(monkeypatch):
    x = clustered(n_clusters=4, per_cluster=25)
    torch.manual_seed(0)
    tok = small_tokenizer(codebook_size=16, dead_code_steps=1)
    calls = []
    real = CodebookLevel._restart_dead_codes
    monkeypatch.setattr(CodebookLevel, "_restart_dead_codes", lambda level, r: calls.append(1) or real(level, r))
    fit_tokenizer(tok, x, epochs=2, batch_size=25, lr=3e-3, show_progress=False, restart_unused=False)
    assert len(calls) == 4 * len(tok.levels)  # every step of the first epoch (4 batches), none of the last
    assert all(level.dead_code_steps == 1 for level in tok.levels)  # the setting is restored


def test_codes_after_a_fit_are_not_inflated_by_a_final_restart():
    # 8 clusters, 16 codewords: a restart right before reading the codes would give every
    # re-seeded codeword the item it was copied from, so all 16 would look active.
    x = clustered(n_clusters=8, per_cluster=25)
    torch.manual_seed(0)
    tok = small_tokenizer(codebook_size=16)
    fit_tokenizer(tok, x, epochs=2, batch_size=64, lr=3e-3, show_progress=False,
                  generator=torch.Generator().manual_seed(0))
    after_fit = tok.encode(x)
    tok.restart_unused_codes(x, generator=torch.Generator().manual_seed(0))
    after_restart = tok.encode(x)
    active = [after_fit[:, level].unique().numel() for level in range(after_fit.shape[1])]
    inflated = [after_restart[:, level].unique().numel() for level in range(after_fit.shape[1])]
    assert sum(active) < sum(inflated)


def test_unused_codes_are_restarted_after_a_full_pass():
    x = clustered(n_clusters=8, per_cluster=25)
    torch.manual_seed(0)
    tok = small_tokenizer()
    with torch.no_grad():
        for level in tok.levels:
            level.codebook.copy_(level.codebook[:1].expand_as(level.codebook))  # one codeword, K copies
    before = tok.codebook_stats(tok.encode(x))["activation"]
    restarted = tok.restart_unused_codes(x)
    after = tok.codebook_stats(tok.encode(x))["activation"]
    assert restarted > 0
    assert all(a > b for a, b in zip(after, before))


# ---- statistics ---------------------------------------------------------------------------

def test_statistics_on_hand_made_table():
    codes = torch.tensor([[0, 1], [0, 1], [1, 2], [2, 3], [3, 0], [0, 1], [3, 1]])
    stats = codebook_statistics(codes, codebook_size=8)
    assert stats["activation"] == [4 / 8, 4 / 8]
    assert stats["unique_coverage"] == pytest.approx(4 / 7)  # (0,1) is shared by three items
    assert stats["n_distinct"] == 5 and stats["max_collision"] == 3 and stats["n_items"] == 7
    p = torch.tensor([3, 1, 1, 2]) / 7  # level 0 usage of codes 0..3
    assert stats["perplexity"][0] == pytest.approx(math.exp(-float((p * p.log()).sum())))


def test_perplexity_of_uniform_usage_is_number_used_and_of_single_code_is_one():
    codes = torch.tensor([[0, 5], [3, 5], [7, 5], [9, 5]] * 3)
    stats = codebook_statistics(codes, codebook_size=16)
    assert stats["perplexity"] == [pytest.approx(4.0), pytest.approx(1.0)]
    assert stats["activation"] == [4 / 16, 1 / 16]
    assert stats["unique_coverage"] == 0.0 and stats["max_collision"] == 3


def test_dedup_level_numbers_collisions_and_leaves_unique_items_at_zero():
    codes = torch.tensor([[0, 1], [0, 1], [1, 2], [0, 1], [2, 2], [1, 2]])
    full = append_dedup_level(codes)
    assert torch.equal(full[:, :2], codes)
    assert full[:, 2].tolist() == [0, 1, 0, 2, 0, 1]
    assert torch.unique(full, dim=0).shape[0] == len(codes)
    assert codebook_statistics(full, 8)["unique_coverage"] == 1.0
    unique = torch.tensor([[0, 1], [1, 0]])
    assert append_dedup_level(unique)[:, 2].tolist() == [0, 0]


def test_format_stats_table_lists_every_scheme():
    codes = torch.tensor([[0, 1], [1, 1]])
    table = format_stats_table({"cosine": codebook_statistics(codes, 4), "hybrid": codebook_statistics(codes, 2)})
    lines = table.splitlines()
    assert len(lines) == 4 and "act@2" in lines[0]
    assert lines[2].startswith("| cosine") and "50.00%" in lines[2] and "100.00%" in lines[3]


# ---- learned cosine / Euclidean mix ------------------------------------------------------------

def test_learned_level_lookup_follows_its_mix_weight():
    level = CodebookLevel(2, 2, "learned")
    level.set_codewords(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    level.euclid_scale.fill_(2.0)
    x = torch.tensor([[1.0, 0.0]])
    # d(x, a) = w * 0 + (1 - w) * 4 / 2 = 2 (1 - w); d(x, b) = w * 1 + (1 - w) * 2 / 2 = 1
    with torch.no_grad():
        level.mix_logit.fill_(math.log(0.9 / 0.1))  # w = 0.9: mostly cosine
    assert torch.allclose(level.distance.pairwise(x, level.codebook), torch.tensor([[0.2, 1.0]]), atol=1e-6)
    assert level.assign(x).item() == 0
    with torch.no_grad():
        level.mix_logit.fill_(math.log(0.1 / 0.9))  # w = 0.1: mostly Euclidean
    assert torch.allclose(level.distance.pairwise(x, level.codebook), torch.tensor([[1.8, 1.0]]), atol=1e-6)
    assert level.assign(x).item() == 1


def test_learned_level_scale_is_the_mean_squared_residual_norm_at_init():
    x = clustered(n_clusters=4, per_cluster=10, dim=8)
    level = CodebookLevel(4, 8, "learned")
    level.init_from_data(x, generator=torch.Generator().manual_seed(0))
    assert torch.isclose(level.euclid_scale, x.pow(2).sum(1).mean())


def test_mix_gradient_reaches_the_mix_weight_only():
    x = clustered(n_clusters=8, per_cluster=10)
    tok = small_tokenizer(distances="learned")
    tok.init_codebooks(x, generator=torch.Generator().manual_seed(0))
    tok.train()

    def gradients(with_mix):
        tok.zero_grad()
        if not with_mix:
            for level in tok.levels:
                level.mix_path = lambda residual: None
        out = tok(x)
        (out.recon_loss + out.quantization_loss).backward()
        for level in tok.levels:
            level.__dict__.pop("mix_path", None)
        return {name: None if p.grad is None else p.grad.clone() for name, p in tok.named_parameters()}

    state = {k: v.clone() for k, v in tok.state_dict().items()}
    with_mix = gradients(True)
    tok.load_state_dict(state)  # the scale buffers moved with the first forward
    without = gradients(False)
    for name, grad in with_mix.items():
        if name.endswith("mix_logit"):
            assert grad is not None and grad.abs() > 0
            assert without[name] is None or without[name].abs() == 0
        else:
            assert torch.allclose(grad, without[name], atol=1e-6), name  # encoder, decoder, codebooks unchanged


def test_fitting_moves_the_learned_weights_and_reports_them():
    x = clustered(n_clusters=8, per_cluster=20)
    tok = small_tokenizer(distances="learned", dead_code_steps=2)  # restarts rewrite codebooks in place mid-step
    assert tok.cosine_weights() == [0.5, 0.5, 0.5]
    fit_tokenizer(tok, x, epochs=5, batch_size=32, lr=1e-2, show_progress=False,
                  generator=torch.Generator().manual_seed(0))
    weights = tok.cosine_weights()
    assert all(0.0 < w < 1.0 for w in weights) and max(abs(w - 0.5) for w in weights) > 1e-3
    assert small_tokenizer().cosine_weights() is None  # fixed lookups report nothing
