"""
UnifiedSASRec
################################################

Reference:
    Guanyu Lin et al. "Unified Semantic and ID Representation Learning for Deep
    Recommenders." arXiv:2502.16474, 2025.
    Wang-Cheng Kang et al. "Self-Attentive Sequential Recommendation." in ICDM 2018.

SASRec whose item table is ``concat(ID embedding, RQ-quantised text embedding)``
(:mod:`recbole_usr.model.item_representations`), trained end to end with the
recommendation, quantisation and reconstruction losses, each logged separately.

Speed: each batch is trimmed to its longest real sequence, and with
``train_whole_sequence`` (default) the model trains on one row per user with the loss at
every position (:mod:`recbole_usr.data.whole_sequence`), as the original SASRec does.
"""

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder

from recbole_usr.config_values import config_value
from recbole_usr.data.user_history import item_user_counts
from recbole_usr.data.whole_sequence import WholeSequenceDataset
from recbole_usr.model.distinct_histories import distinct_histories
from recbole_usr.model.item_representations import build_item_representation, log_parameter_counts
from recbole_usr.model.item_representations import uses_semantic_ids as representation_uses_semantic_ids
from recbole_usr.model.pre_ln_transformer import PreLNTransformerEncoder
from recbole_usr.semantic_id_artifact import CarriesSemanticIDs
from recbole_usr.trainer import SemanticIDTrainer


class UnifiedSASRec(CarriesSemanticIDs, SequentialRecommender):
    r"""SASRec over unified semantic + ID item vectors (hidden size = id_dim + semantic_dim)."""

    predict_groups_histories = True  # predict() encodes each distinct history once itself

    @staticmethod
    def uses_semantic_ids(config):
        """Whether callers must prepare the semantic-ID artifact before building the model."""
        return representation_uses_semantic_ids(config)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.inner_size = config["inner_size"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.hidden_act = config["hidden_act"]
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.loss_type = config["loss_type"]
        self.whole_sequence = config["train_whole_sequence"]
        self.length_bucket_count = config["train_length_buckets"] or 1
        if self.loss_type not in ("CE", "BCE", "SS"):
            raise NotImplementedError("Make sure 'loss_type' in ['CE', 'BCE', 'SS']!")
        self.train_neg_num = config["train_neg_num"]
        self.train_neg_sampling = config_value(config, "train_neg_sampling", "uniform")
        self.train_neg_share = config_value(config, "train_neg_share", "sequence")
        if self.train_neg_share not in ("sequence", "position"):
            raise ValueError(f"train_neg_share must be sequence or position, got '{self.train_neg_share}'.")
        if self.loss_type == "SS" and not (isinstance(self.train_neg_num, int) and self.train_neg_num > 0):
            raise ValueError(f"train_neg_num must be a positive integer for loss_type SS, got {self.train_neg_num!r}.")
        if self.train_neg_sampling not in ("uniform", "popularity"):
            raise ValueError(f"train_neg_sampling must be uniform or popularity, got '{self.train_neg_sampling}'.")

        self.item_repr = build_item_representation(config, dataset)
        # calculate_loss returns (rec_loss, *the representation's losses): their names for the log
        self.loss_names = ("rec_loss", *getattr(self.item_repr, "loss_names", ()))
        if hasattr(self.item_repr, "codes"):  # the artifact it started from goes into checkpoints
            self.keep_semantic_ids(config, dataset)
        self.hidden_size = self.item_repr.dim
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden size {self.hidden_size} (id_dim + semantic_dim) must be divisible by n_heads={self.n_heads}."
            )
        self.transformer_layout = config_value(config, "transformer_layout", "post_ln")
        self.position_index = config_value(config, "position_index", "start")
        self.weight_init = config_value(config, "weight_init", "normal")
        for key, value, allowed in (("transformer_layout", self.transformer_layout, ("post_ln", "pre_ln")),
                                    ("position_index", self.position_index, ("start", "end")),
                                    ("weight_init", self.weight_init, ("normal", "xavier_normal"))):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got '{value}'.")
        # RecTools' SASRec attends to a left-padded sequence's padding slots (no key padding mask)
        # and adds its attention output undropped: options of the pre-LN encoder only
        self.attend_padding = bool(config_value(config, "attend_padding", False))
        attention_output_dropout = bool(config_value(config, "attention_output_dropout", True))
        for key, value, recbole_value, recbole_does in (
                ("attend_padding", self.attend_padding, False, "masks padding"),
                ("attention_output_dropout", attention_output_dropout, True, "always drops its attention output")):
            if value != recbole_value and self.transformer_layout != "pre_ln":
                raise ValueError(f"{key}: {value} needs transformer_layout: pre_ln "
                                 f"(RecBole's post-LN encoder {recbole_does}).")
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        layer_args = dict(n_layers=self.n_layers, n_heads=self.n_heads, hidden_size=self.hidden_size,
                          inner_size=self.inner_size, hidden_dropout_prob=self.hidden_dropout_prob,
                          attn_dropout_prob=self.attn_dropout_prob, hidden_act=self.hidden_act,
                          layer_norm_eps=self.layer_norm_eps)
        if self.transformer_layout == "post_ln":  # RecBole's: LayerNorm(item + position), post-LN blocks
            self.trm_encoder = TransformerEncoder(**layer_args)
            self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
        else:  # the original SASRec's: no input LayerNorm, pre-LN blocks, a final LayerNorm
            self.trm_encoder = PreLNTransformerEncoder(**layer_args, attention_output_dropout=attention_output_dropout)
            self.LayerNorm = nn.Identity()
        self.dropout = nn.Dropout(self.hidden_dropout_prob)
        # Dropout on the item table itself (RecTools' item net): in training the same dropped
        # table embeds the inputs and scores the targets and negatives.
        self.item_dropout = nn.Dropout(config_value(config, "item_emb_dropout_prob", 0.0))

        # Items held out by the cold-item split do not exist at training time: with
        # train_exclude_cold_items they are never a training candidate (CE logit, BCE negative),
        # so their rows are never pushed down; evaluation ranks every item as usual.
        cold_items = getattr(dataset, "cold_items", None)
        excluded = torch.zeros(self.n_items, dtype=torch.bool)
        if cold_items is not None and len(cold_items) and config["train_exclude_cold_items"] is not False:
            excluded[torch.as_tensor(cold_items, dtype=torch.long)] = True
        excluded[0] = True  # padding
        self.register_buffer("train_excluded", excluded, persistent=False)
        self.register_buffer("train_candidates", torch.nonzero(~excluded).squeeze(1), persistent=False)
        # Sampled softmax draws negatives from train_candidates, uniformly or by popularity
        # (number of training users per item); log_q is each item's log sampling probability,
        # subtracted from the logits (logQ correction) so the sampled softmax stays unbiased.
        weights = torch.ones(self.n_items)
        if self.loss_type == "SS" and self.train_neg_sampling == "popularity":
            weights = item_user_counts(dataset).float().clamp(min=1.0)
        weights = weights.masked_fill(excluded, 0.0)
        self.register_buffer("neg_weights", weights[self.train_candidates], persistent=False)
        self.register_buffer("log_q", torch.log(weights / weights.sum()).clamp(min=-1e4), persistent=False)

        for module in (self.position_embedding, self.trm_encoder, self.LayerNorm):
            module.apply(self._init_weights)  # the item representation initialises itself
        if self.weight_init == "xavier_normal":  # RecTools' SASRec: every matrix, item tables included
            self.xavier_normal_init()
        self.parameter_counts = log_parameter_counts(self.item_repr)

    def _init_weights(self, module):
        """SASRec's initialisation."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def xavier_normal_init(self):
        """Xavier-normal for every weight matrix of the backbone and every embedding table of the
        item representation (not its tokenizer, which has its own initialisation and pre-training)."""
        matrices = [p for p in (*self.position_embedding.parameters(), *self.trm_encoder.parameters()) if p.dim() > 1]
        matrices += [m.weight for m in self.item_repr.modules() if isinstance(m, nn.Embedding)]
        for matrix in matrices:
            nn.init.xavier_normal_(matrix.data)
        for embedding in (m for m in self.item_repr.modules() if isinstance(m, nn.Embedding)):
            if embedding.padding_idx is not None:
                embedding.weight.data[embedding.padding_idx].zero_()

    def item_table(self, batch_items=None):
        """``([n_items, hidden], auxiliary losses)``: one table embeds inputs and scores candidates.

        ``batch_items`` (the items a training batch contains) lets a representation spend its
        gradient computation where the batch is (see UnifiedItemEmbedding.forward).
        """
        if batch_items is not None and getattr(self.item_repr, "uses_batch_items", False):
            table, losses = self.item_repr(batch_items)
        else:
            table, losses = self.item_repr()
        return self.item_dropout(table), losses

    def encode_sequence(self, item_seq, item_table):
        """Transformer output at every position ``[B, L', H]``, L' = the batch's longest sequence."""
        max_len = int((item_seq != 0).sum(dim=1).max().clamp(min=1))
        item_seq = item_seq[:, :max_len]
        input_emb = F.embedding(item_seq, item_table) + self.position_embedding(self.position_ids(item_seq))
        input_emb = self.dropout(self.LayerNorm(input_emb))
        if self.transformer_layout == "pre_ln":
            padding_counts = self.max_seq_length - (item_seq != 0).sum(dim=1) if self.attend_padding else None
            return self.trm_encoder(input_emb, padding_counts)
        attention_mask = self.get_attention_mask(item_seq)
        return self.trm_encoder(input_emb, attention_mask, output_all_encoded_layers=True)[-1]

    def position_ids(self, item_seq):
        """``[B, L]`` position of each item: counted from the first item (``position_index: start``,
        RecBole's) or back from the last (``end``: the most recent item always has position 0,
        as in the original SASRec's left-padded input). Padding gets position 0 either way."""
        positions = torch.arange(item_seq.shape[1], device=item_seq.device).expand_as(item_seq)
        if self.position_index == "start":
            return positions
        lengths = (item_seq != 0).sum(dim=1, keepdim=True)
        return (lengths - 1 - positions).clamp(min=0)

    def forward(self, item_seq, item_seq_len, item_table=None):
        """Output at each row's last real position ``[B, H]``, computed in length buckets
        (evaluation batches mix lengths too: one long history would pad the whole batch)."""
        if item_table is None:
            item_table, _ = self.item_table()
        seq_output = item_table.new_empty(item_seq.shape[0], self.hidden_size)
        for rows in self.length_buckets(item_seq_len):
            output = self.encode_sequence(item_seq[rows], item_table)
            seq_output[rows] = self.gather_indexes(output, item_seq_len[rows] - 1)
        return seq_output

    def length_buckets(self, item_seq_len):
        """Row indices of the batch split into ``train_length_buckets`` groups of similar length.

        Each group is trimmed to its own longest sequence, so the transformer's cost follows
        the real lengths instead of the batch's longest one.
        """
        order = torch.argsort(item_seq_len)
        return [rows for rows in torch.chunk(order, max(1, min(self.length_bucket_count, len(order)))) if len(rows)]

    def training_targets(self, item_seq, item_seq_len, pos_items):
        """Next item at every position ``[B, L']`` and the mask of real positions.

        With whole sequences, position t predicts item t+1 and the last real position the
        row's target; otherwise only the last real position counts (RecBole's prefixes).
        """
        max_len = int(item_seq_len.max())
        positions = torch.arange(max_len, device=item_seq.device).unsqueeze(0)
        last = (item_seq_len - 1).unsqueeze(1)
        targets = torch.zeros_like(item_seq[:, :max_len])
        targets[:, : max_len - 1] = item_seq[:, 1:max_len]
        targets = targets.scatter(1, last, pos_items.unsqueeze(1))
        mask = positions <= last if self.whole_sequence else positions == last
        return targets, mask

    def sample_negatives(self, *shape):
        """``[*shape, train_neg_num]`` training candidates, uniform or by popularity."""
        shape = (*shape, self.train_neg_num)
        if self.train_neg_sampling == "uniform":
            picks = torch.randint(0, len(self.train_candidates), shape, device=self.train_candidates.device)
        else:
            count = int(torch.tensor(shape).prod())
            picks = torch.multinomial(self.neg_weights, count, replacement=True).view(shape)
        return self.train_candidates[picks]

    def sampled_softmax_logits(self, output, targets, item_table, negatives):
        """Logits ``[..., 1 + K]``: the target first, then K sampled negatives.

        ``output [B, L', H]`` with ``targets [B, L']``: ``negatives [B, K]`` are shared by a
        row's positions. ``output [N, H]`` with ``targets [N]``: ``negatives [N, K]`` are
        each position's own. A negative equal to the position's target is masked out, so the
        positive never counts against itself; with popularity sampling every logit is
        corrected by the item's log sampling probability (logQ).
        """
        pos = (output * item_table[targets]).sum(-1, keepdim=True)
        if output.dim() == 3:  # shared by the row: [B, L', H] x [B, H, K]
            neg = torch.bmm(output, item_table[negatives].transpose(1, 2))
            negatives = negatives.unsqueeze(1)
        else:  # per position: [N, K, H] x [N, H, 1]
            neg = torch.bmm(item_table[negatives], output.unsqueeze(-1)).squeeze(-1)
        if self.train_neg_sampling != "uniform":
            pos = pos - self.log_q[targets].unsqueeze(-1)
            neg = neg - self.log_q[negatives]
        neg = neg.masked_fill(negatives == targets.unsqueeze(-1), float("-inf"))
        return torch.cat([pos, neg], dim=-1)

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        batch_items = torch.unique(torch.cat([item_seq.flatten(), pos_items]))
        item_table, aux_losses = self.item_table(batch_items[batch_items > 0])
        hidden, targets, sampled_logits = [], [], []
        for rows in self.length_buckets(item_seq_len):
            output = self.encode_sequence(item_seq[rows], item_table)
            bucket_targets, mask = self.training_targets(item_seq[rows], item_seq_len[rows], pos_items[rows])
            if self.loss_type == "SS" and self.train_neg_share == "sequence":
                negatives = self.sample_negatives(len(rows))
                sampled_logits.append(self.sampled_softmax_logits(output, bucket_targets, item_table, negatives)[mask])
            hidden.append(output[mask])
            targets.append(bucket_targets[mask])
        hidden, targets = torch.cat(hidden), torch.cat(targets)  # [N real positions, H], [N]
        if self.loss_type == "SS":
            if self.train_neg_share == "sequence":
                logits = torch.cat(sampled_logits)  # [N, 1 + K], the target in column 0
            else:
                logits = self.sampled_softmax_logits(hidden, targets, item_table, self.sample_negatives(len(targets)))
            rec_loss = F.cross_entropy(logits, torch.zeros_like(targets))
        elif self.loss_type == "CE":
            logits = hidden @ item_table.t()
            logits = logits.masked_fill(self.train_excluded, float("-inf"))  # padding, held-out items
            rec_loss = F.cross_entropy(logits, targets)
        else:  # BCE with one uniformly sampled negative per position
            picks = torch.randint(0, len(self.train_candidates), targets.shape, device=targets.device)
            negatives = self.train_candidates[picks]
            pos_score = (hidden * item_table[targets]).sum(-1)
            neg_score = (hidden * item_table[negatives]).sum(-1)
            rec_loss = F.softplus(-pos_score).mean() + F.softplus(neg_score).mean()
        return (rec_loss, *aux_losses.values())

    def predict(self, interaction):
        """Score of each row's candidate; sampled evaluation repeats a history per candidate,
        so each distinct history is encoded once."""
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        test_item = interaction[self.ITEM_ID]
        item_table, _ = self.item_table()
        (item_seq, item_seq_len), row_of = distinct_histories(item_seq, item_seq_len)
        seq_output = self.forward(item_seq, item_seq_len, item_table)[row_of]
        return (seq_output * item_table[test_item]).sum(dim=1)  # [B]

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        item_table, _ = self.item_table()
        seq_output = self.forward(item_seq, item_seq_len, item_table)
        return seq_output @ item_table.t()  # [B n_items]


# RecBole finds these by name (recbole_usr.utils.register_with_recbole).
UnifiedSASRecDataset = WholeSequenceDataset
UnifiedSASRecTrainer = SemanticIDTrainer
