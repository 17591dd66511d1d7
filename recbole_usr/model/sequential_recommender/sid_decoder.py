"""
SIDDecoder
################################################

A decoder-only generative retriever over semantic IDs that trains every target of a user's
sequence in one pass.

Why: TIGER (encoder-decoder, one example per RecBole prefix, ``D`` tokens per history item)
costs about 361 s per Beauty epoch on a 2-core CPU and does not converge there. Here an item
is one position, embedded as the sum of its code embeddings (``item_repr: ngram``, the
frozen semantic IDs of :mod:`recbole_usr.semantic_id_artifact`), and a causal transformer
(UnifiedSASRec's backbone) reads the whole sequence once. The output at position ``t``
generates item ``t + 1``'s unique path of ``D = L + 1`` codes (TIGER's, with its
de-duplication level) level by level:

    u_l = h_t + level_l + sum_{j < l} e_j(c_j),    z_l = u_l + FF(LN(u_l)),
    log P(c_l | h_t, c_<l) = log_softmax(LN(z_l) W_l^T + b_l)

so the loss of every position and level is one batched computation (teacher forcing), and
with ``position_index: start`` it equals the sum of the per-prefix losses exactly (causal
attention). Related designs: RPG (Hou et al., KDD 2025) and HSTU-style one-pass training.

Inference: :meth:`full_sort_predict` runs the constrained beam search of
:mod:`recbole_usr.model.generative.beam_search` over the catalogue's prefix trie (every
generated path is a real item; ``beam_size`` items get their path log-probability, every
other item ``-inf``); :meth:`predict` gives the exact path log-probability of a candidate
(sampled evaluation such as uni99). Both agree on beam items.
"""

import torch
import torch.nn.functional as F
from torch import nn

from recbole_usr.data.whole_sequence import WholeSequenceDataset
from recbole_usr.model.distinct_histories import distinct_histories
from recbole_usr.model.generative.beam_search import constrained_beam_search
from recbole_usr.model.generative.item_paths import GeneratesItemPaths
from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec
from recbole_usr.trainer import BeamSearchTrainer


class SIDDecoder(GeneratesItemPaths, UnifiedSASRec):
    r"""Causal transformer over items (summed code embeddings) generating the next item's semantic ID."""

    loss_names = ("rec_loss",)

    @staticmethod
    def uses_semantic_ids(config):
        """Callers prepare the semantic-ID artifact before building the model."""
        return True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_names = SIDDecoder.loss_names
        self.init_item_paths(config, dataset)  # item_codes [n_items, D], the trie, beam_size

        hidden = self.hidden_size
        self.level_embedding = nn.Embedding(self.depth, hidden)
        self.code_embedding = nn.Embedding(self.depth * self.codebook_size, hidden)  # chosen codes, by level
        self.head_norm = nn.LayerNorm(hidden, eps=self.layer_norm_eps)
        self.head_ff = nn.Sequential(nn.Linear(hidden, self.inner_size), nn.ReLU(), nn.Dropout(self.hidden_dropout_prob),
                                     nn.Linear(self.inner_size, hidden))
        self.output_norm = nn.LayerNorm(hidden, eps=self.layer_norm_eps)
        self.output_weight = nn.Parameter(torch.empty(self.depth, self.codebook_size, hidden))
        self.output_bias = nn.Parameter(torch.zeros(self.depth, self.codebook_size))
        for module in (self.level_embedding, self.code_embedding, self.head_norm, self.head_ff, self.output_norm):
            module.apply(self._init_weights)
        self.output_weight.data.normal_(mean=0.0, std=self.initializer_range)

    # ---- the generative head -------------------------------------------------------------

    def code_embeddings(self, codes):
        """``e_l(c_l)`` of the first ``codes.shape[-1]`` levels: ``[..., l]`` -> ``[..., l, H]``."""
        offsets = torch.arange(codes.shape[-1], device=codes.device) * self.codebook_size
        return self.code_embedding(codes + offsets)

    def code_prefix_sums(self, codes):
        """``sum_{j < l} e_j(c_j)`` for l = 0 .. D-1: ``[..., D]`` codes -> ``[..., D, H]`` (level 0: zeros)."""
        embedded = self.code_embeddings(codes)
        return torch.cumsum(embedded, dim=-2) - embedded

    def level_logits(self, u, level=None):
        """``u`` ``[..., D, H]`` -> logits ``[..., D, K]``; or ``[..., H]`` -> ``[..., K]`` at ``level``."""
        z = self.output_norm(u + self.head_ff(self.head_norm(u)))
        if level is None:
            return torch.einsum("...dh,dkh->...dk", z, self.output_weight) + self.output_bias
        return z @ self.output_weight[level].t() + self.output_bias[level]

    def teacher_forced_logits(self, hidden, items):
        """Per-level logits ``[N, D, K]`` of ``items`` ``[N]``'s paths given the states ``hidden`` ``[N, H]``."""
        codes = self.item_codes[items]
        u = hidden.unsqueeze(-2) + self.level_embedding.weight + self.code_prefix_sums(codes)
        return self.level_logits(u)

    def path_log_prob(self, hidden, items):
        """log P(item's path | state) ``[N]``."""
        log_probs = F.log_softmax(self.teacher_forced_logits(hidden, items), dim=-1)
        return log_probs.gather(-1, self.item_codes[items].unsqueeze(-1)).squeeze(-1).sum(-1)

    # ---- RecBole's contract --------------------------------------------------------------

    def calculate_loss(self, interaction):
        """Mean token cross-entropy over every real position's next item and every level."""
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        item_table, _ = self.item_table()
        hidden, targets = [], []
        for rows in self.length_buckets(item_seq_len):
            output = self.encode_sequence(item_seq[rows], item_table)
            bucket_targets, mask = self.training_targets(item_seq[rows], item_seq_len[rows], pos_items[rows])
            hidden.append(output[mask])
            targets.append(bucket_targets[mask])
        hidden, targets = torch.cat(hidden), torch.cat(targets)  # [N, H], [N]
        logits = self.teacher_forced_logits(hidden, targets)  # [N, D, K]
        return F.cross_entropy(logits.reshape(-1, self.codebook_size), self.item_codes[targets].reshape(-1))

    def predict(self, interaction):
        """Exact path log-probability of each row's candidate (sampled evaluation)."""
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        test_item = interaction[self.ITEM_ID]
        (item_seq, item_seq_len), row_of = distinct_histories(item_seq, item_seq_len)
        hidden = self.forward(item_seq, item_seq_len)[row_of]
        return self.path_log_prob(hidden, test_item)

    def beam_search(self, item_seq, item_seq_len, beam_size=None):
        """Constrained beam search from each row's last state: a ``BeamSearchOutput``."""
        hidden = self.forward(item_seq, item_seq_len)  # [B, H]

        def step_log_probs(level, codes, parents):  # codes [B, W, level]; stateless, parents unused
            u = hidden.unsqueeze(1) + self.level_embedding.weight[level]
            if level:
                u = u + self.code_embeddings(codes).sum(-2)
            return F.log_softmax(self.level_logits(u, level), dim=-1)

        return constrained_beam_search(step_log_probs, self.trie, hidden.shape[0], beam_size or self.beam_size,
                                       device=hidden.device)

    def full_sort_predict(self, interaction):
        """``[B, n_items]``: beam path log-probabilities for the generated items, ``-inf`` elsewhere."""
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        return self.beam_scores(self.beam_search(item_seq, item_seq_len))


# RecBole finds these by name (recbole_usr.utils.register_with_recbole).
SIDDecoderDataset = WholeSequenceDataset
SIDDecoderTrainer = BeamSearchTrainer
