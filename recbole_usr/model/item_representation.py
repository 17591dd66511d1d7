"""How a sequence model turns item ids into vectors, chosen by the ``item_repr`` property.

Every representation is an ``nn.Module`` whose ``forward()`` returns the whole item table
``[n_items, dim]`` (row 0 = padding, zeros) and a dict of named auxiliary losses, so one
table both embeds the input sequence and scores the candidates. ``describe()`` returns
parameter counts for the log; ``epoch_statistics()`` returns numbers worth logging per epoch.
"""

from logging import getLogger

import torch
from torch import nn

from recbole_usr.data.text_embedding import load_item_text_embeddings
from recbole_usr.quantization import RQTokenizer, fit_tokenizer


def init_id_table(embedding, initializer_range):
    """SASRec's initialisation for an ID table; the padding row stays zero."""
    embedding.weight.data.normal_(mean=0.0, std=initializer_range)
    embedding.weight.data[0].zero_()


def count_parameters(*tensors_or_modules):
    total = 0
    for part in tensors_or_modules:
        if part is None:
            continue
        if isinstance(part, nn.Module):
            total += sum(p.numel() for p in part.parameters())
        else:
            total += part.numel()
    return total


class IDItemEmbedding(nn.Module):
    """A plain ID table (RecBole's SASRec): memorises, cannot generalise to unseen items."""

    def __init__(self, n_items, dim, initializer_range=0.02):
        super().__init__()
        self.dim = dim
        self.embedding = nn.Embedding(n_items, dim, padding_idx=0)
        init_id_table(self.embedding, initializer_range)

    def forward(self):
        return self.embedding.weight, {}

    def describe(self):
        return {"id_table": self.embedding.weight.numel()}

    def epoch_statistics(self):
        return {}


class UnifiedItemEmbedding(nn.Module):
    """concat(ID embedding [id_dim], RQ-quantised text embedding [semantic_dim]) (arXiv 2502.16474).

    The tokenizer reads each item's frozen sentence embedding; its codebooks are k-means
    initialised and optionally pre-trained alone (``rq_pretrain_epochs``) before the
    recommender starts. ``rq_train_mode: end_to_end`` keeps training it with the
    recommendation loss plus ``rq_loss_weight`` x (codebook + commitment) and
    ``recon_loss_weight`` x reconstruction; ``two_stage`` freezes it after pre-training.
    ``id_dim: 0`` is semantic-only; ``use_semantic: False`` is ID-only.
    """

    uses_batch_items = True

    def __init__(self, config, dataset):
        super().__init__()
        n_items = dataset.item_num
        self.id_dim = config["id_dim"]
        self.use_semantic = config["use_semantic"]
        self.semantic_dim = config["semantic_dim"] if self.use_semantic else 0
        self.dim = self.id_dim + self.semantic_dim
        if self.dim <= 0:
            raise ValueError("UnifiedItemEmbedding needs id_dim > 0 or use_semantic: True.")
        self.train_mode = config["rq_train_mode"] or "end_to_end"
        if self.train_mode not in ("end_to_end", "two_stage"):
            raise ValueError(f"rq_train_mode must be end_to_end or two_stage, got '{self.train_mode}'.")
        self.rq_loss_weight = config["rq_loss_weight"]
        self.recon_loss_weight = config["recon_loss_weight"]
        self.rec_grad_scale = 1.0 if config["rq_rec_grad_scale"] is None else config["rq_rec_grad_scale"]
        self.rec_codeword_grad = bool(config["rq_rec_codeword_grad"])

        # Optional linear map of concat(ID, semantic) to a wider vector, so a narrow unified
        # item (e.g. 32 + 64) can feed a wide backbone (256) without a 248-d semantic latent.
        self.concat_dim = self.dim
        self.projection = None
        if config["unified_output_dim"]:
            self.projection = nn.Linear(self.concat_dim, config["unified_output_dim"], bias=False)
            self.dim = config["unified_output_dim"]

        self.id_embedding = None
        if self.id_dim:
            self.id_embedding = nn.Embedding(n_items, self.id_dim, padding_idx=0)
            init_id_table(self.id_embedding, config["initializer_range"] or 0.02)
        self.tokenizer = None
        if self.use_semantic:
            text = load_item_text_embeddings(config, dataset)
            self.register_buffer("text_embeddings", text, persistent=False)
            self.tokenizer = RQTokenizer.from_config(config, in_dim=text.shape[1])
            self.pretrain_tokenizer(config, text[1:])
            if self.train_mode == "two_stage":
                self.tokenizer.requires_grad_(False)
        self.cached_codes = None
        # the auxiliary losses forward() returns in training, in order
        end_to_end = self.tokenizer is not None and self.train_mode == "end_to_end"
        self.loss_names = ("rq_loss", "recon_loss") if end_to_end else ()

    def pretrain_tokenizer(self, config, item_text):
        """k-means initialisation, then ``rq_pretrain_epochs`` of reconstruction + quantisation."""
        generator_state = torch.get_rng_state()
        fit_tokenizer(
            self.tokenizer,
            item_text,
            epochs=config["rq_pretrain_epochs"] or 0,
            batch_size=config["rq_pretrain_batch_size"] or 1024,
            lr=config["rq_pretrain_lr"] or 1e-3,
            show_progress=bool(config["show_progress"]),
            seed=config["seed"],
            kmeans_init=bool(config["rq_kmeans_init"]),
        )
        torch.set_rng_state(generator_state)  # keep the recommender's initialisation seed-stable

    def train(self, mode=True):
        self.cached_codes = None  # the tokenizer may change from here on
        return super().train(mode)

    def item_codes(self):
        """Semantic IDs of every item ``[n_items - 1, L]`` (padding excluded).

        Assigned once per ``train()``/``eval()`` switch: once per training epoch, once per
        evaluation. Within an epoch the codewords keep training, but which codewords an item
        uses stays fixed, so every item's vector is computed the same way at every step.
        """
        if getattr(self, "cached_codes", None) is None:
            with torch.no_grad():
                self.cached_codes = self.tokenizer.encode(self.text_embeddings[1:])
        return self.cached_codes

    def semantic_table(self):
        """Quantised vectors ``[n_items, semantic_dim]`` (row 0 zeros): the sum of each item's
        current codewords. In end-to-end training with ``rq_rec_codeword_grad`` the
        recommendation gradient reaches the codewords through it."""
        codes = self.item_codes()
        train_codewords = self.training and self.train_mode == "end_to_end" and self.rec_codeword_grad
        with torch.set_grad_enabled(train_codewords and torch.is_grad_enabled()):
            vectors = self.tokenizer.embed_codes(codes)
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
        if self.tokenizer is not None:
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
        n_items = self.id_embedding.num_embeddings if self.id_embedding is not None else self.text_embeddings.shape[0]
        counts = {"id_table": count_parameters(self.id_embedding)}
        if self.tokenizer is not None:
            counts["codebooks"] = sum(level.codewords().numel() for level in self.tokenizer.levels)
            counts["encoder_decoder_mlp"] = count_parameters(self.tokenizer.encoder, self.tokenizer.decoder)
        if self.projection is not None:
            counts["projection"] = count_parameters(self.projection)
        counts["item_embedding"] = counts["id_table"] + counts.get("codebooks", 0) + counts.get("projection", 0)
        counts["id_only_64d_table"] = n_items * 64
        counts["id_only_same_width_table"] = n_items * self.dim
        # What a served model stores (tables + each item's code indices) and what training
        # also holds (the RQ encoder / decoder and the frozen text-embedding buffer).
        code_indices = (n_items - 1) * len(self.tokenizer.levels) if self.tokenizer is not None else 0
        counts["serving_size"] = counts["item_embedding"] + code_indices
        counts["training_size"] = (counts["serving_size"] + counts.get("encoder_decoder_mlp", 0)
                                   + (self.text_embeddings.numel() if self.tokenizer is not None else 0))
        return counts

    def epoch_statistics(self):
        if self.tokenizer is None:
            return {}
        with torch.no_grad():
            codes = self.tokenizer.encode(self.text_embeddings[1:])
        return self.tokenizer.codebook_stats(codes)


def build_item_representation(config, dataset):
    """The module named by ``item_repr`` (default ``unified``)."""
    name = config["item_repr"] or "unified"
    if name == "unified":
        return UnifiedItemEmbedding(config, dataset)
    if name == "id":
        return IDItemEmbedding(dataset.item_num, config["hidden_size"] or 64, config["initializer_range"] or 0.02)
    if name in ("ngram", "spm", "hash"):  # arXiv 2306.08121; imported here (it imports this module)
        from recbole_usr.model.semantic_id_representations import build_semantic_id_representation

        return build_semantic_id_representation(config, dataset)
    raise ValueError(f"Unknown item_repr '{name}'. Available: unified, id, ngram, spm, hash.")


def log_parameter_counts(representation, logger=None):
    """The paper's "token size": item-embedding parameters against a 64-d ID-only table."""
    logger = logger or getLogger()
    counts = representation.describe()
    text = ", ".join(f"{key}={value:,}" for key, value in counts.items())
    if "item_embedding" in counts and counts.get("id_only_same_width_table"):
        ratio = counts["item_embedding"] / counts["id_only_same_width_table"]
        text += f" -> item embedding is {ratio:.1%} of an ID table of the same width ({1 - ratio:.1%} smaller)"
    logger.info(f"Item representation parameters: {text}")
    return counts
