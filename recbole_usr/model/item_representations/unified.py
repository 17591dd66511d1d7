"""``item_repr: unified``: concat(ID embedding [id_dim], RQ-quantised text embedding
[semantic_dim]) (Lin et al., arXiv 2502.16474).

The tokenizer starts from the semantic-ID artifact (:mod:`recbole_usr.semantic_id_artifact`:
k-means initialised and pre-trained alone for ``rq_pretrain_epochs``, fitted once outside
the model). ``rq_train_mode: end_to_end`` keeps training it with the recommendation loss
plus ``rq_loss_weight`` x (codebook + commitment) and ``recon_loss_weight`` x
reconstruction; ``two_stage`` freezes it. ``id_dim: 0`` is semantic-only.

Codes per epoch: each item's codes are re-assigned once, at the start of every training
epoch (:meth:`UnifiedItemEmbedding.refresh_codes`, called by the trainer), and kept through
that epoch's evaluation: the checkpoint chosen after epoch e is scored with the codes it
trained with in epoch e. They are a buffer, so the checkpoint carries them.

End-to-end training lets codewords drift away from every item (on Amazon Beauty the last
level fell from 99% to 27% of its codewords in use over 45 epochs). With
``rq_end_to_end_restarts`` each refresh first re-seeds the codewords no training item
selects, as pre-training does between its epochs; the codebook health it reports is then the
tokenizer's own assignment at the end of each epoch, before any re-seeding
(``natural_activation``), never the codes straight after a restart.
"""

from logging import getLogger

import torch
from torch import nn

from recbole_usr.config_values import config_value
from recbole_usr.data.text_embedding import load_item_text_embeddings
from recbole_usr.model.item_representations.parameters import count_parameters, init_id_table, size_figures
from recbole_usr.semantic_id_artifact import fit_mask, semantic_ids_for


class UnifiedItemEmbedding(nn.Module):
    uses_semantic_ids = True
    uses_batch_items = True

    def __init__(self, config, dataset):
        super().__init__()
        n_items = dataset.item_num
        self.id_dim = config_value(config, "id_dim", 8)
        self.semantic_dim = config_value(config, "semantic_dim", 64)
        self.train_mode = config_value(config, "rq_train_mode", "end_to_end")
        if self.train_mode not in ("end_to_end", "two_stage"):
            raise ValueError(f"rq_train_mode must be end_to_end or two_stage, got '{self.train_mode}'.")
        self.rq_loss_weight = config_value(config, "rq_loss_weight", 1.0)
        self.recon_loss_weight = config_value(config, "recon_loss_weight", 1.0)
        self.rec_grad_scale = config_value(config, "rq_rec_grad_scale", 0.0)
        codeword_grad = config_value(config, "rq_rec_codeword_grad", True)  # True / False, or one per level
        self.end_to_end_restarts = bool(config_value(config, "rq_end_to_end_restarts", False))
        if self.end_to_end_restarts and self.train_mode != "end_to_end":
            raise ValueError("rq_end_to_end_restarts: True needs rq_train_mode: end_to_end (a two_stage tokenizer "
                             "is frozen: its codes are never refreshed).")

        # Optional linear map of concat(ID, semantic) to a wider vector, so a narrow unified
        # item (e.g. 32 + 64) can feed a wide backbone (256) without a 248-d semantic latent.
        self.concat_dim = self.id_dim + self.semantic_dim
        self.dim = self.concat_dim
        self.projection = None
        if config_value(config, "unified_output_dim", None):
            self.projection = nn.Linear(self.concat_dim, config["unified_output_dim"], bias=False)
            self.dim = config["unified_output_dim"]

        self.id_embedding = None
        if self.id_dim:
            self.id_embedding = nn.Embedding(n_items, self.id_dim, padding_idx=0)
            init_id_table(self.id_embedding, config_value(config, "initializer_range", 0.02))
        text = load_item_text_embeddings(config, dataset)
        self.register_buffer("text_embeddings", text, persistent=False)
        artifact = semantic_ids_for(config, dataset)
        self.tokenizer = artifact.tokenizer(in_dim=text.shape[1])
        levels = len(self.tokenizer.levels)
        self.rec_codeword_grad = [codeword_grad] * levels if isinstance(codeword_grad, bool) else list(codeword_grad)
        if len(self.rec_codeword_grad) != levels:
            raise ValueError(f"rq_rec_codeword_grad: True, False or one per level ({levels}), got {codeword_grad!r}.")
        self.fit_mask = fit_mask(text.shape[0], artifact.fit_items)  # matched first by a unique last level
        if self.train_mode == "two_stage":
            self.tokenizer.requires_grad_(False)
        self.register_buffer("codes", artifact.codes.clone())  # row 0 padding; the codes in use
        self.code_churn = None  # share of items whose codes changed at the last refresh
        self.code_churn_by_level = None  # the same, level by level
        self.restarted = None  # codewords re-seeded at the last refresh (rq_end_to_end_restarts)
        # the auxiliary losses forward() returns in training, in order (names for the log)
        self.loss_names = ("rq_loss", "recon_loss") if self.train_mode == "end_to_end" else ()
        self.register_load_state_dict_post_hook(UnifiedItemEmbedding._codes_of_older_checkpoints)

    @staticmethod
    def _codes_of_older_checkpoints(module, incompatible_keys):
        """Checkpoints written before the codes were saved: re-assign them from the loaded
        tokenizer, as those versions did at evaluation, and say so."""
        missing = [key for key in incompatible_keys.missing_keys if key == "codes" or key.endswith(".codes")]
        if missing:
            getLogger().warning("This checkpoint predates saved semantic IDs: its codes are re-assigned from its "
                                "tokenizer, as that version did at evaluation time.")
            module.codes[1:] = module.current_codes()
            for key in missing:
                incompatible_keys.missing_keys.remove(key)

    @classmethod
    def from_config(cls, config, dataset):
        return cls(config, dataset)

    @torch.no_grad()
    def current_codes(self):
        """``[n_items - 1, L]``: every item's codes as the tokenizer assigns them now (training
        items matched first by a unique last level); nothing is stored."""
        return self.tokenizer.encode(self.text_embeddings[1:], first=self.fit_mask)

    @torch.no_grad()
    def refresh_codes(self):
        """Re-assign every item's codes from the current tokenizer (start of a training
        epoch), after re-seeding unused codewords from the training items' residuals with
        ``rq_end_to_end_restarts``; returns the share of items whose codes changed (and keeps
        it per level in ``code_churn_by_level``: which levels move)."""
        if self.end_to_end_restarts:
            self.restarted = self.tokenizer.restart_unused_codes(self.text_embeddings[1:][self.fit_mask])
        codes = self.current_codes()
        changed = codes != self.codes[1:]
        self.codes[1:] = codes
        self.code_churn = float(changed.any(dim=1).float().mean()) if len(changed) else 0.0
        self.code_churn_by_level = changed.float().mean(dim=0).tolist() if len(changed) else [0.0] * codes.shape[1]
        return self.code_churn

    def item_codes(self):
        """Semantic IDs of every item ``[n_items - 1, L]`` (padding excluded), as used now."""
        return self.codes[1:]

    def semantic_table(self):
        """Quantised vectors ``[n_items, semantic_dim]`` (row 0 zeros): the sum of each item's
        current codewords. In end-to-end training the recommendation gradient reaches the
        codewords of the levels ``rq_rec_codeword_grad`` names through it."""
        train_codewords = self.training and self.train_mode == "end_to_end" and any(self.rec_codeword_grad)
        with torch.set_grad_enabled(train_codewords and torch.is_grad_enabled()):
            vectors = self.tokenizer.embed_codes(self.item_codes(), grad_levels=self.rec_codeword_grad)
        return torch.cat([vectors.new_zeros(1, self.semantic_dim), vectors])

    def forward(self, batch_items=None):
        """The item table and, in end-to-end training, the tokenizer's own losses.

        The same rule builds every row at every step (an item's codes from this epoch, the
        current codewords), so training cannot tell batch items from the other candidates.
        The RQ encoder and decoder run with gradients on ``batch_items`` only (the items of
        the batch): over the whole catalogue at every step they would cost more than the
        transformer on a CPU. ``rq_rec_grad_scale`` > 0 adds the straight-through
        recommendation gradient to the encoder for those items; on Amazon Beauty scale 1
        collapsed the codebooks within 30 steps (level-1 activation 1.6%, unique coverage
        0.02%), hence the default 0.
        """
        parts, losses = [], {}
        if self.id_embedding is not None:
            parts.append(self.id_embedding.weight)
        table = self.semantic_table()
        if self.training and self.train_mode == "end_to_end":
            items = batch_items if batch_items is not None else torch.arange(1, table.shape[0], device=table.device)
            out = self.tokenizer(self.text_embeddings[items])
            if self.rec_grad_scale:
                straight_through = self.rec_grad_scale * (out.latent - out.latent.detach())
                table = table.index_put((items,), straight_through, accumulate=True)
            losses["rq_loss"] = self.rq_loss_weight * out.quantization_loss
            losses["recon_loss"] = self.recon_loss_weight * out.recon_loss
        parts.append(table)
        table = torch.cat(parts, dim=-1)
        if self.projection is not None:
            table = self.projection(table)  # no bias: the padding row stays zero
        return table, losses

    def describe(self):
        n_items = self.codes.shape[0]
        counts = {"id_table": count_parameters(self.id_embedding),
                  "codebooks": sum(level.codewords().numel() for level in self.tokenizer.levels),
                  "encoder_decoder_mlp": count_parameters(self.tokenizer.encoder, self.tokenizer.decoder)}
        if self.projection is not None:
            counts["projection"] = count_parameters(self.projection)
        item_embedding = counts["id_table"] + counts["codebooks"] + counts.get("projection", 0)
        code_indices = (n_items - 1) * len(self.tokenizer.levels)
        training_only = counts["encoder_decoder_mlp"] + self.text_embeddings.numel()
        return {**counts, **size_figures(item_embedding, n_items, self.dim, code_indices, training_only)}

    def epoch_statistics(self):
        """Codebook health of the codes this epoch trained with (not re-encoded, never
        straight after a restart), the epoch's code churn and, with ``rq_distances:
        learned``, each level's learned cosine weight (it keeps training end to end)."""
        stats = self.tokenizer.codebook_stats(self.item_codes())
        cosine_weight = self.tokenizer.cosine_weights()
        if cosine_weight is not None:
            stats["cosine_weight"] = cosine_weight
        if self.code_churn is not None:
            stats["code_churn"] = self.code_churn
            stats["code_churn_by_level"] = self.code_churn_by_level
        if self.restarted is not None:  # the codes in use were assigned right after re-seeding
            natural_stats = self.tokenizer.codebook_stats(self.current_codes())
            stats["natural_activation"] = natural_stats["activation"]
            stats["natural_unique_coverage"] = natural_stats["unique_coverage"]
            stats["restarted"] = self.restarted
        return stats
