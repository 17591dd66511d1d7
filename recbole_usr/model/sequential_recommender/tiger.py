"""
TIGER
################################################

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." in NeurIPS 2023
    (arXiv:2305.05065).

Generative retrieval over semantic IDs. Stage one (:mod:`recbole_usr.model.generative.semantic_ids`):
a frozen RQ tokenizer gives every item ``L`` codes plus a de-duplication code, a unique
path of ``D = L + 1`` tokens. Stage two (this module): an encoder-decoder transformer
reads the user's history as a flat sequence of those tokens (plus a hashed user token)
and generates the next item's path level by level; it trains with teacher forcing, one
cross-entropy over each level's ``K`` tokens, one example per RecBole prefix row.

Token ids: 0 is padding, code ``c`` of level ``l`` is ``1 + l * K + c`` (one table, offset
per level, shared by encoder and decoder), then the decoder's start token. Encoder
positions count back from the most recent item, so "last item, level 0" always has the
same embedding whatever the history length.

Inference (:meth:`TIGER.full_sort_predict`): beam search constrained by a tensor prefix
trie over the catalogue's paths, so every generated path is a real item; the ``beam_size``
items found get their sequence log-probability, every other item ``-inf``.
:meth:`TIGER.predict` (sampled evaluation, e.g. ``mode: uni99``) gives the exact sequence
log-probability of each candidate by teacher-forced scoring; both agree on beam items.

Speed on CPU: histories are cut to the batch's longest real one (at most
``history_max_items``); batches (training and beam search) are split into
``length_buckets`` groups of similar length, each trimmed to its own longest history;
the beam decoder (:mod:`recbole_usr.model.generative.beam_decoder`) caches keys/values,
so each level decodes one new token per beam, and beams share their user's encoder
output instead of copying it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_usr.model.distinct_histories import distinct_histories
from recbole_usr.model.generative.beam_decoder import BeamDecoder
from recbole_usr.model.generative.beam_search import constrained_beam_search
from recbole_usr.model.generative.item_paths import GeneratesItemPaths
from recbole_usr.semantic_id_artifact import CarriesSemanticIDs
from recbole_usr.trainer import BeamSearchTrainer


class TIGER(GeneratesItemPaths, CarriesSemanticIDs, SequentialRecommender):
    r"""Encoder-decoder transformer generating the next item's semantic ID under a prefix trie."""

    predict_groups_histories = True  # predict() encodes each distinct history once itself
    loss_names = ("rec_loss",)  # the log's name for calculate_loss's mean token cross-entropy

    @staticmethod
    def uses_semantic_ids(config):
        """Callers prepare the semantic-ID artifact before building the model."""
        return True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        self.hidden_size = config["hidden_size"]
        self.n_heads = config["n_heads"]
        self.inner_size = config["inner_size"]
        self.n_encoder_layers = config["n_encoder_layers"]
        self.n_decoder_layers = config["n_decoder_layers"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.history_items = min(config["history_max_items"] or self.max_seq_length, self.max_seq_length)
        self.n_user_tokens = config["n_user_tokens"] if config["use_user_token"] else 0
        self.length_buckets = max(int(config["length_buckets"] or 1), 1)
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by n_heads={self.n_heads}.")

        # Stage one: frozen semantic IDs, one unique path of D tokens per item, and their trie.
        self.init_item_paths(config, dataset)
        self.keep_semantic_ids(config, dataset)  # into checkpoints: a reload attaches it instead of refitting

        # Stage two: the seq2seq transformer.
        self.bos_token = 1 + self.depth * self.codebook_size
        self.token_embedding = nn.Embedding(self.bos_token + 1, self.hidden_size, padding_idx=0)
        self.user_embedding = nn.Embedding(self.n_user_tokens, self.hidden_size) if self.n_user_tokens else None
        # encoder positions: (items back from the most recent) * D + level; one more slot for the user token
        self.encoder_position = nn.Embedding(self.history_items * self.depth + 1, self.hidden_size)
        self.decoder_position = nn.Embedding(self.depth, self.hidden_size)
        encoder_layer = nn.TransformerEncoderLayer(
            self.hidden_size,
            self.n_heads,
            self.inner_size,
            dropout=self.hidden_dropout_prob,
            activation="relu",
            layer_norm_eps=self.layer_norm_eps,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            encoder_layer,
            self.n_encoder_layers,
            norm=nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps),
            enable_nested_tensor=False,
        )
        self.decoder = BeamDecoder(
            self.n_decoder_layers,
            self.hidden_size,
            self.n_heads,
            self.inner_size,
            self.hidden_dropout_prob,
            self.attn_dropout_prob,
            self.layer_norm_eps,
        )
        self.dropout = nn.Dropout(self.hidden_dropout_prob)
        # one output head per level: [D, K, H] weights, [D, K] biases
        self.output_weight = nn.Parameter(torch.empty(self.depth, self.codebook_size, self.hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(self.depth, self.codebook_size))
        self.apply(self._init_weights)
        self.output_weight.data.normal_(mean=0.0, std=self.initializer_range)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ---- semantic IDs ------------------------------------------------------------------

    def item_tokens(self, items):
        """Token ids ``[*items.shape, D]`` of ``items``; padding item 0 -> all 0 (padding)."""
        offsets = 1 + torch.arange(self.depth, device=items.device) * self.codebook_size
        tokens = self.item_codes[items] + offsets
        return tokens.masked_fill((items == 0).unsqueeze(-1), 0)

    # ---- encoder / decoder -------------------------------------------------------------

    def encode(self, user_id, item_seq, item_seq_len):
        """Encoder output ``[B, S, H]`` and its padding mask ``[B, S]`` (True = padding).

        The history is cut to its last ``history_items`` items and to the batch's longest
        real history, right-aligned so the most recent item is last.
        """
        n = max(min(int(item_seq_len.max()), self.history_items), 1)
        index = item_seq_len.unsqueeze(1) - n + torch.arange(n, device=item_seq.device)  # [B, n]
        items = item_seq.gather(1, index.clamp(min=0)).masked_fill(index < 0, 0)
        tokens = self.item_tokens(items)  # [B, n, D]
        back = (n - 1 - torch.arange(n, device=item_seq.device)).unsqueeze(1)
        positions = back * self.depth + torch.arange(self.depth, device=item_seq.device)  # [n, D]
        x = self.token_embedding(tokens) + self.encoder_position(positions)
        x = x.flatten(1, 2)  # [B, n * D, H]
        padding = (tokens == 0).flatten(1)
        if self.user_embedding is not None:
            user_slot = self.encoder_position.weight[-1]
            user = self.user_embedding(user_id % self.n_user_tokens) + user_slot  # hashing trick
            x = torch.cat([user.unsqueeze(1), x], dim=1)
            padding = torch.cat([padding.new_zeros(padding.shape[0], 1), padding], dim=1)
        memory = self.encoder(self.dropout(x), src_key_padding_mask=padding)
        return memory, padding

    def decoder_inputs(self, target_tokens):
        """Teacher forcing: ``[start, t_0, ..., t_{D-2}]`` for target tokens ``[N, D]``."""
        start = target_tokens.new_full((target_tokens.shape[0], 1), self.bos_token)
        return torch.cat([start, target_tokens[:, :-1]], dim=1)

    def level_logits(self, hidden, level=None):
        """Logits over each level's K codes: ``[N, D, H] -> [N, D, K]``, or ``[N, H] -> [N, K]`` at ``level``."""
        if level is None:
            return torch.einsum("ndh,dkh->ndk", hidden, self.output_weight) + self.output_bias
        return hidden @ self.output_weight[level].t() + self.output_bias[level]

    def teacher_forced_logits(self, memory_kv, memory_mask, target_items):
        """Per-level logits ``[N, D, K]`` of ``target_items`` ``[N]`` given their rows' projected memory."""
        tokens = self.decoder_inputs(self.item_tokens(target_items))
        positions = torch.arange(self.depth, device=tokens.device)
        x = self.dropout(self.token_embedding(tokens) + self.decoder_position(positions))
        return self.level_logits(self.decoder(x, memory_kv, memory_mask))

    def forward(self, user_id, item_seq, item_seq_len, target_items):
        """Per-level logits ``[B, D, K]`` of the target items' codes, teacher-forced."""
        memory, padding = self.encode(user_id, item_seq, item_seq_len)
        memory_kv, memory_mask = self.decoder.memory_keys_values(memory, padding)
        return self.teacher_forced_logits(memory_kv, memory_mask, target_items)

    # ---- RecBole's contract ------------------------------------------------------------

    def length_groups(self, item_seq_len, always=False):
        """Row indices in ``length_buckets`` groups of similar history length (training, or ``always``)."""
        if self.length_buckets <= 1 or not (self.training or always):
            return [torch.arange(item_seq_len.shape[0], device=item_seq_len.device)]
        order = torch.argsort(item_seq_len.clamp(max=self.history_items))
        return [group for group in order.chunk(self.length_buckets) if group.numel()]

    def calculate_loss(self, interaction):
        user_id = interaction[self.USER_ID]
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        total = 0.0
        for rows in self.length_groups(item_seq_len):  # each group trimmed to its own longest history
            logits = self.forward(user_id[rows], item_seq[rows], item_seq_len[rows], pos_items[rows])
            targets = self.item_codes[pos_items[rows]]
            total = total + F.cross_entropy(logits.reshape(-1, self.codebook_size), targets.reshape(-1), reduction="sum")
        return total / (pos_items.numel() * self.depth)  # mean token cross-entropy

    def sequence_log_prob(self, logits, items):
        """log P(item's path) ``[B]`` from teacher-forced logits ``[B, D, K]``."""
        log_probs = F.log_softmax(logits, dim=-1)
        return log_probs.gather(-1, self.item_codes[items].unsqueeze(-1)).squeeze(-1).sum(-1)

    def predict(self, interaction):
        """Exact sequence log-probability of each row's candidate item (sampled evaluation)."""
        user_id = interaction[self.USER_ID]
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        test_item = interaction[self.ITEM_ID]
        # sampled evaluation repeats each history for every candidate: encode and project each once
        (user_id, item_seq, item_seq_len), inverse = distinct_histories(user_id, item_seq, item_seq_len)
        memory, padding = self.encode(user_id, item_seq, item_seq_len)
        memory_kv, memory_mask = self.decoder.memory_keys_values(memory, padding)
        memory_kv = [(keys[inverse], values[inverse]) for keys, values in memory_kv]
        logits = self.teacher_forced_logits(memory_kv, memory_mask[inverse], test_item)
        return self.sequence_log_prob(logits, test_item)

    def beam_search(self, user_id, item_seq, item_seq_len, beam_size=None):
        """Constrained beam search: :class:`~recbole_usr.model.generative.beam_search.BeamSearchOutput`.

        The decoder runs one new position per beam and level, on cached keys/values.
        """
        memory, padding = self.encode(user_id, item_seq, item_seq_len)
        memory_kv, memory_mask = self.decoder.memory_keys_values(memory, padding)
        batch_size = item_seq.shape[0]
        offsets = 1 + torch.arange(self.depth, device=item_seq.device) * self.codebook_size
        cache = None

        def step_log_probs(level, codes, parents):  # codes [B, W, level]
            nonlocal cache
            n_beams = codes.shape[1]
            if level == 0:
                tokens = codes.new_full((batch_size * n_beams, 1), self.bos_token)
            else:
                cache = cache.select(parents)
                tokens = (codes[:, :, -1] + offsets[level - 1]).reshape(-1, 1)
            x = self.token_embedding(tokens) + self.decoder_position.weight[level]
            hidden, cache = self.decoder.step(x, memory_kv, memory_mask, cache, n_beams)
            return F.log_softmax(self.level_logits(hidden, level), dim=-1).view(batch_size, n_beams, -1)

        return constrained_beam_search(step_log_probs, self.trie, batch_size, beam_size or self.beam_size,
                                       device=item_seq.device)

    def full_sort_predict(self, interaction):
        """``[B, n_items]``: beam log-probabilities for the generated items, ``-inf`` elsewhere.

        Users are searched in ``length_buckets`` groups of similar history length, each
        trimmed to its own longest history.
        """
        user_id = interaction[self.USER_ID]
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        scores = torch.full((item_seq.shape[0], self.n_items), float("-inf"), device=item_seq.device)
        for rows in self.length_groups(item_seq_len, always=True):
            scores = self.beam_scores(self.beam_search(user_id[rows], item_seq[rows], item_seq_len[rows]), rows, scores)
        return scores


TIGERTrainer = BeamSearchTrainer  # RecBole finds it by name (recbole_usr.utils.register_with_recbole)
