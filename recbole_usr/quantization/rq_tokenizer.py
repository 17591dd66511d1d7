"""Residual-quantisation tokenizer: text embedding -> L semantic codes per item.

Follows the RQ-VAE of TIGER (Rajput et al., arXiv 2305.05065) with the per-level distance
choice of "Unified semantic and ID representation" (Lin et al., arXiv 2502.16474): an MLP
encoder maps an item's text embedding to a latent ``z``; L codebook levels quantise ``z``
residually; an MLP decoder reconstructs the text embedding from the quantised vector.

Residual after a cosine level (the choice made here). A cosine level *selects* its
codeword by comparing the L2-normalised residual ``r/|r|`` with L2-normalised codewords
``e/|e|`` (as the authors' code, Guanyu-Lin/Unified_Semantic_ID, does). By default
(``cosine_codewords="raw"``) it then *contributes* the stored codeword ``e`` and passes on
``r - e``; the codebook and commitment losses compare ``r`` and ``e`` un-normalised, so a
codeword settles at the mean of the residuals that chose it, and k-means init uses the
mean of each spherical cluster's members. The authors' code (``rq_modules/rqvae.py``:
stacked cosine-similarity ``ResidualVQ`` levels of vector-quantize-pytorch, then a
Euclidean level on ``z - sum(cosine codewords)``) contributes the *unit* codeword and passes
on ``r - e/|e|``, with losses between ``r/|r|`` and ``e/|e|``; ``cosine_codewords="unit"``
reproduces that. Why raw is the default: ``r - e/|e|`` is only a refinement when ``|r|``
is close to 1; with a free-scale encoder output (norm ~0.6 on Amazon Beauty) every level-2
residual is dominated by ``-e1/|e1|`` and level 2 repeats level 1. Measured on Amazon Beauty
(``python -m recbole_usr.tokenize`` defaults, 20 epochs): unique coverage of the hybrid
scheme 6.5% with "unit" against 95.3% with "raw" (all-cosine: 9.7% against 95.6%).
Either way the quantised vector is exactly the sum of the contributed codewords, hence a
function of the codes alone (``embed_codes``). A Euclidean level contributes ``e`` and
passes on ``r - e``.

Gradients. ``quantized = z + (sum of used codewords - z).detach()``: its value is the sum of
codewords, and its gradient reaches the encoder unchanged (straight-through), once, whatever
the number of levels or the residual norms, so a downstream recommendation loss trains the
encoder stably. Codewords learn from the codebook loss (or from EMA updates when
``use_ema``); the encoder also learns from the commitment loss at every level. A ``learned``
level (lookup distance ``w cos + (1 - w) Euclidean``) adds a zero-valued relaxed term through
which the reconstruction loss trains ``w`` alone (:meth:`CodebookLevel.mix_path`).

Losses are sums over features, means over items, summed over levels:
``codebook = sum_l |sg(r_l) - e_l|^2``, ``commitment = beta * sum_l |r_l - sg(e_l)|^2``,
``recon = |decoder(quantized) - x|^2``.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from recbole_usr.config_values import config_value
from recbole_usr.quantization.codebook_stats import codebook_statistics
from recbole_usr.quantization.distances import LearnedMixDistance, get_distance, resolve_distances
from recbole_usr.quantization.kmeans import kmeans, sample_rows
from recbole_usr.quantization.unique_codes import unique_last_codes

MIX_TEMPERATURE = 0.1  # softness of a learned level's relaxed lookup (distances are ~1: see LearnedMixDistance)


@dataclass
class RQOutput:
    """Everything one forward pass produces; the losses are scalar tensors."""

    quantized: torch.Tensor  # [N, semantic_dim], straight-through to ``latent``
    latent: torch.Tensor  # [N, semantic_dim], encoder output z
    codes: torch.Tensor  # [N, L] long
    reconstruction: torch.Tensor  # [N, in_dim]
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    recon_loss: torch.Tensor

    @property
    def quantization_loss(self):
        return self.codebook_loss + self.commitment_loss


def mlp(sizes, dropout=0.0):
    """Linear layers with ReLU (and dropout) between them; the last layer is linear."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CodebookLevel(nn.Module):
    """One level of residual quantisation: K codewords compared under one distance.

    ``cosine_codewords`` says what a cosine level contributes (see the module docstring):
    ``"raw"`` the stored codeword (residual passed on ``r - e``), ``"unit"`` the normalised
    one (``r - e/|e|``, the authors' code). Euclidean levels always use the raw codeword.
    Also owns the two training-time mechanisms that act per level: EMA codeword updates
    (instead of the codebook loss) and dead-code restart. Both mutate state only in
    training mode; ``assign`` never does.
    """

    def __init__(self, codebook_size, dim, distance="euclidean", use_ema=False, ema_decay=0.99,
                 dead_code_steps=0, cosine_codewords="raw", ema_eps=1e-5):
        super().__init__()
        if cosine_codewords not in ("raw", "unit"):
            raise ValueError(f"cosine_codewords must be 'raw' or 'unit', got {cosine_codewords!r}")
        self.codebook_size = codebook_size
        self.distance = get_distance(distance)
        # the space codewords live in and are compared with residuals for the losses
        self.unit_space = self.distance.name == "cosine" and cosine_codewords == "unit"
        self.use_ema = use_ema
        self.ema_decay = ema_decay
        self.ema_eps = ema_eps
        self.dead_code_steps = dead_code_steps
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / dim ** 0.5, requires_grad=not use_ema)
        self.learns_mix = self.distance.name == "learned"
        if self.learns_mix:  # the lookup's cosine / Euclidean weight, learned (see mix_path)
            self.mix_logit = nn.Parameter(torch.zeros(()))
            self.register_buffer("euclid_scale", torch.ones(()))
            self.distance = LearnedMixDistance(self)
        # consecutive training steps each codeword went unselected
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        if use_ema:
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", self.codebook.detach().clone())

    def _view(self, v):
        return self.distance.project(v) if self.unit_space else v

    def codewords(self):
        """The codewords [K, D] as this level contributes them to the quantised vector."""
        return self._view(self.codebook)

    def assign(self, residual):
        """Nearest codeword index [N] for each residual row (no state change, no gradient)."""
        with torch.no_grad():
            return self.distance.nearest(residual, self.codebook)

    @torch.no_grad()
    def set_codewords(self, vectors, counts=None):
        """Overwrite the codebook (k-means init); resets usage counters and EMA statistics."""
        vectors = self._view(vectors)
        self.codebook.copy_(vectors)
        self.unused_steps.zero_()
        if self.use_ema:
            counts = torch.ones(self.codebook_size) if counts is None else counts.float().clamp_min(1.0)
            self.ema_count.copy_(counts)
            self.ema_sum.copy_(vectors * counts[:, None])

    def mix_path(self, residual):
        """Zero-valued term whose gradient trains a learned level's mix weight (``None`` for
        the fixed lookups).

        The hard nearest-codeword choice has no gradient, so the weight learns through its
        soft relaxation: ``soft = softmax(-d_w(r, C) / MIX_TEMPERATURE) @ C`` with residuals
        and codewords detached, added to the quantised vector as ``soft - sg(soft)``. The
        reconstruction loss then moves ``w`` towards the lookup whose choices reconstruct
        better; the codes, the codebooks and the encoder see exactly what they would without it.
        """
        if not (self.learns_mix and self.training):
            return None
        codebook = self.codebook.detach().clone()  # a copy: later in-place codebook updates leave backward intact
        soft = torch.softmax(-self.distance.pairwise(residual.detach(), codebook) / MIX_TEMPERATURE, 1) @ codebook
        return soft - soft.detach()

    @torch.no_grad()
    def init_from_data(self, residual, n_iters=20, init="kmeans++", generator=None, points_per_centroid=0):
        """k-means under this level's distance. Clusters decide membership; a raw-space codeword is
        the plain mean of its members (the least-squares codeword), a unit-space one the spherical
        centroid. ``points_per_centroid`` > 0 fits the centroids on at most that many residuals
        per codeword (a sample; every residual is still assigned)."""
        if self.learns_mix:
            self.euclid_scale.fill_(float(residual.float().pow(2).sum(1).mean().clamp_min(1e-12)))
        centroids, assign = kmeans(residual, self.codebook_size, self.distance, n_iters=n_iters, init=init,
                                  generator=generator, max_points=points_per_centroid * self.codebook_size)
        counts = torch.bincount(assign, minlength=self.codebook_size)
        if not self.unit_space:
            sums = torch.zeros_like(centroids).index_add_(0, assign, residual.float())
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None].to(sums.dtype)
        self.set_codewords(centroids, counts)

    def forward(self, residual):
        """Quantise ``residual`` [N, D]: returns codes [N], used codewords [N, D] and the two losses."""
        if self.training and self.dead_code_steps > 0:
            self._restart_dead_codes(residual)
        codes = self.assign(residual)
        used = self.codewords()[codes]  # gradient reaches the codebook (unless EMA)
        target = self._view(residual)  # what the codeword is compared with
        commitment = (target - used.detach()).pow(2).sum(-1).mean()
        if self.use_ema:
            codebook_loss = residual.new_zeros(())
        else:
            codebook_loss = (target.detach() - used).pow(2).sum(-1).mean()
        if self.training:
            self._count_usage(codes)
            if self.learns_mix:  # follow the residuals' scale as the encoder moves
                # out of place: this step's relaxed lookup (mix_path) holds the old value for backward
                self.euclid_scale = 0.99 * self.euclid_scale + 0.01 * residual.detach().pow(2).sum(-1).mean()
            if self.use_ema:
                self._ema_update(codes, target.detach())
        return codes, used, codebook_loss, commitment

    @torch.no_grad()
    def _count_usage(self, codes):
        used = torch.bincount(codes, minlength=self.codebook_size) > 0
        self.unused_steps.add_(1).masked_fill_(used, 0)

    @torch.no_grad()
    def _ema_update(self, codes, target):
        d = self.ema_decay
        counts = torch.bincount(codes, minlength=self.codebook_size).to(target.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, target)
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        total = self.ema_count.sum()
        # Laplace smoothing keeps rarely used codewords finite
        smoothed = (self.ema_count + self.ema_eps) / (total + self.codebook_size * self.ema_eps) * total
        self.codebook.copy_(self._view(self.ema_sum / smoothed[:, None]))

    @torch.no_grad()
    def _restart_dead_codes(self, residual):
        """Re-seed codewords unused for ``dead_code_steps`` steps from random current residuals."""
        dead = (self.unused_steps >= self.dead_code_steps).nonzero().squeeze(1)
        if dead.numel() == 0 or residual.shape[0] == 0:
            return
        rows = sample_rows(residual.shape[0], dead.numel(), None).to(residual.device)
        new = self._view(residual.detach()[rows]).to(self.codebook.dtype)
        self.codebook[dead] = new
        self.unused_steps[dead] = 0
        if self.use_ema:
            self.ema_count[dead] = 1.0
            self.ema_sum[dead] = new


class RQTokenizer(nn.Module):
    """Encoder MLP -> L residual codebook levels -> decoder MLP (see the module docstring)."""

    def __init__(self, in_dim, semantic_dim=64, hidden_sizes=(512, 256), n_levels=3, codebook_size=256,
                 distances=("cosine", "cosine", "euclidean"), beta=0.25, use_ema=False, ema_decay=0.99,
                 dead_code_steps=0, dropout=0.0, cosine_codewords="raw", unique_last_level=False):
        super().__init__()
        self.in_dim = in_dim
        self.unique_last_level = unique_last_level  # encode() matches colliding items to free last codewords
        self.semantic_dim = semantic_dim
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.distances = resolve_distances(distances, n_levels)
        self.beta = beta
        hidden_sizes = list(hidden_sizes or [])
        self.encoder = mlp([in_dim, *hidden_sizes, semantic_dim], dropout)
        self.decoder = mlp([semantic_dim, *reversed(hidden_sizes), in_dim], dropout)
        self.levels = nn.ModuleList(
            CodebookLevel(codebook_size, semantic_dim, d, use_ema, ema_decay, dead_code_steps, cosine_codewords)
            for d in self.distances
        )
        self.register_buffer("initialized", torch.tensor(False))  # set by init_codebooks

    @classmethod
    def from_config(cls, config, in_dim):
        """Build from RecBole-style config keys (``rq_*``, ``semantic_dim``); missing keys use defaults."""
        n_levels = int(config_value(config, "rq_levels", 3))
        return cls(
            in_dim=in_dim,
            semantic_dim=int(config_value(config, "semantic_dim", 64)),
            hidden_sizes=[int(h) for h in config_value(config, "rq_hidden_sizes", [512, 256])],
            n_levels=n_levels,
            codebook_size=int(config_value(config, "rq_codebook_size", 256)),
            distances=config_value(config, "rq_distances", "hybrid"),
            beta=float(config_value(config, "rq_beta", 0.25)),
            use_ema=bool(config_value(config, "rq_use_ema", False)),
            ema_decay=float(config_value(config, "rq_ema_decay", 0.99)),
            dead_code_steps=int(config_value(config, "rq_dead_code_steps", 0)),
            dropout=float(config_value(config, "rq_dropout", 0.0)),
            cosine_codewords=str(config_value(config, "rq_cosine_codewords", "raw")),
            unique_last_level=bool(config_value(config, "rq_unique_last_level", False)),
        )

    def quantize(self, latent):
        """Residual quantisation of ``latent``: (quantized, codes, codebook_loss, commitment_loss)."""
        residual = latent
        total = torch.zeros_like(latent)
        mix = torch.zeros_like(latent)  # zero; carries the learned levels' mix gradients
        codes, cb_loss, commit_loss = [], latent.new_zeros(()), latent.new_zeros(())
        for level in self.levels:
            level_codes, used, cb, commit = level(residual)  # may re-seed dead codewords in place: first
            path = level.mix_path(residual)
            if path is not None:
                mix = mix + path
            codes.append(level_codes)
            total = total + used
            residual = residual - used.detach()
            cb_loss = cb_loss + cb
            commit_loss = commit_loss + commit
        quantized = latent + (total - latent).detach() + mix  # straight-through to the encoder
        return quantized, torch.stack(codes, dim=1), cb_loss, self.beta * commit_loss

    def forward(self, x):
        latent = self.encoder(x)
        quantized, codes, cb_loss, commit_loss = self.quantize(latent)
        reconstruction = self.decoder(quantized)
        recon_loss = (reconstruction - x).pow(2).sum(-1).mean()
        return RQOutput(quantized, latent, codes, reconstruction, cb_loss, commit_loss, recon_loss)

    def _eval_latent(self, x, batch_size):
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self.encoder(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def init_codebooks(self, x, n_iters=20, init="kmeans++", batch_size=8192, generator=None, points_per_centroid=0):
        """k-means each level's codebook on that level's residuals of ``encoder(x)``, level by level
        (on a sample of ``points_per_centroid`` x codebook size residuals when > 0 and smaller)."""
        residual = self._eval_latent(x, batch_size)
        for level in self.levels:
            level.init_from_data(residual, n_iters=n_iters, init=init, generator=generator,
                                 points_per_centroid=points_per_centroid)
            residual = residual - level.codewords()[level.assign(residual)]
        self.initialized.fill_(True)

    @torch.no_grad()
    def encode(self, x, batch_size=8192, first=None):
        """Semantic IDs [N, L] of ``x`` [N, in_dim] (eval path: no dropout, no state change).

        With ``unique_last_level`` the last level is a collision-free matching within each
        code prefix (:func:`~recbole_usr.quantization.unique_codes.unique_last_codes`; rows in
        the bool mask ``first`` are matched before the others), so codes depend on which
        items are encoded together: encode the whole catalogue at once."""
        residual = self._eval_latent(x, batch_size)
        codes = []
        for i, level in enumerate(self.levels):
            if self.unique_last_level and i == self.n_levels - 1:
                prefix = torch.stack(codes, dim=1) if codes else residual.new_zeros(x.shape[0], 0, dtype=torch.long)
                level_codes = unique_last_codes(residual, prefix, level, first)
            else:
                level_codes = level.assign(residual)
            codes.append(level_codes)
            residual = residual - level.codewords()[level_codes]
        return torch.stack(codes, dim=1) if codes else residual.new_zeros(x.shape[0], 0, dtype=torch.long)

    @torch.no_grad()
    def restart_unused_codes(self, x, batch_size=8192, generator=None):
        """Re-seed, level by level, every codeword that no row of ``x`` selects, from random
        residuals of that level; returns how many were re-seeded.

        Run on the whole catalogue after each tokenizer-alone epoch: a codeword no item uses
        after a full pass is dead whatever the batch size, a rule that holds on 1k items as on
        100k (a step-count threshold does not: on ml-100k one epoch is two steps).
        """
        residual = self._eval_latent(x, batch_size)
        restarted = 0
        for level in self.levels:
            codes = level.assign(residual)
            unused = (torch.bincount(codes, minlength=self.codebook_size) == 0).nonzero().squeeze(1)
            if unused.numel():
                rows = sample_rows(residual.shape[0], unused.numel(), generator).to(residual.device)
                new = level._view(residual[rows]).to(level.codebook.dtype)
                level.codebook[unused] = new
                level.unused_steps[unused] = 0
                if level.use_ema:
                    level.ema_count[unused] = 1.0
                    level.ema_sum[unused] = new
                codes = level.assign(residual)
                restarted += unused.numel()
            residual = residual - level.codewords()[codes]
        return restarted

    def cosine_weights(self):
        """Per level, the cosine share of the lookup: 1 cosine, 0 Euclidean, learned in
        between for a ``learned`` level; ``None`` when no level learns it."""
        if not any(level.learns_mix for level in self.levels):
            return None
        return [float(level.distance.weight().detach()) if level.learns_mix else float(level.distance.name == "cosine")
                for level in self.levels]

    def embed_codes(self, codes, grad_levels=None):
        """The quantised vector [N, semantic_dim] that ``codes`` [N, L] stand for (sum of used
        codewords). ``grad_levels`` (one bool per level) detaches the levels marked False, so a
        loss on the vector trains only the others' codewords."""
        grad_levels = grad_levels or [True] * len(self.levels)
        return sum((level.codewords() if grad else level.codewords().detach())[codes[:, i]]
                   for i, (level, grad) in enumerate(zip(self.levels, grad_levels)))

    def codebook_stats(self, codes):
        return codebook_statistics(codes, self.codebook_size)


def fit_tokenizer(tokenizer, x, epochs, batch_size, lr, show_progress=True, generator=None, kmeans_init=True,
                  kmeans_iters=20, weight_decay=0.0, desc="RQ tokenizer", restart_unused=True,
                  kmeans_points_per_centroid=0):
    """Train ``tokenizer`` alone on ``x`` [N, in_dim] with Adam on recon + quantisation losses.

    Runs k-means initialisation first when ``kmeans_init`` and the codebooks are not yet
    initialised (``kmeans_points_per_centroid``: see :meth:`RQTokenizer.init_codebooks`). With ``restart_unused``, codewords no item selects after an epoch are
    re-seeded (:meth:`RQTokenizer.restart_unused_codes`) *between* epochs only, and the
    per-step dead-code restart (``dead_code_steps``) is off during the last epoch: a restart
    at the end would hand each re-seeded codeword to the item it was copied from, and the
    codes taken right after would count it as active. ``generator`` drives
    shuffling, k-means and restarts (pass a private one for codes that do not depend on the
    caller's RNG). Returns one dict of mean losses per epoch.
    """
    x = x.detach().float()
    if kmeans_init and not bool(tokenizer.initialized):
        tokenizer.init_codebooks(x, n_iters=kmeans_iters, generator=generator,
                                 points_per_centroid=kmeans_points_per_centroid)
    params = [p for p in tokenizer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    was_training = tokenizer.training
    tokenizer.train()
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not show_progress, dynamic_ncols=True)
    step_restarts = [level.dead_code_steps for level in tokenizer.levels]
    for epoch_index in bar:
        if epoch_index == epochs - 1:  # no per-step dead-code restart either in the last epoch
            for level in tokenizer.levels:
                level.dead_code_steps = 0
        sums = {"loss": 0.0, "recon": 0.0, "codebook": 0.0, "commitment": 0.0}
        perm = torch.randperm(x.shape[0], generator=generator)
        n_batches = 0
        for i in range(0, x.shape[0], batch_size):
            out = tokenizer(x[perm[i:i + batch_size]])
            loss = out.recon_loss + out.quantization_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for key, value in (("loss", loss), ("recon", out.recon_loss), ("codebook", out.codebook_loss),
                               ("commitment", out.commitment_loss)):
                sums[key] += float(value.detach())
            n_batches += 1
        epoch = {k: v / max(n_batches, 1) for k, v in sums.items()}
        if restart_unused and epoch_index < epochs - 1:
            epoch["restarted"] = tokenizer.restart_unused_codes(x, generator=generator)
        history.append(epoch)
        bar.set_postfix(loss=f"{epoch['loss']:.4f}", recon=f"{epoch['recon']:.4f}")
    for level, steps in zip(tokenizer.levels, step_restarts):
        level.dead_code_steps = steps
    tokenizer.train(was_training)
    return history
