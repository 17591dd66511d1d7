"""Pre-LayerNorm causal transformer: the original SASRec's block layout (Kang & McAuley 2018;
RecTools' and the eSASRec benchmark's SASRec), offered beside RecBole's post-LN encoder.

Why: RecBole normalises the input (``LayerNorm(item + position)``) and every sub-layer's
output (post-LN). The original SASRec normalises each sub-layer's input instead, adds
the attention output to the normalised query, and ends with one LayerNorm. Which layout
trains better is an empirical question (``transformer_layout`` in UnifiedSASRec.yaml).

RecTools' SASRec (and the SASRec.pytorch port it follows) also has no key padding mask: a
left-padded sequence attends to its padding slots, zero vectors whose key and value are the
attention's biases. ``padding_counts`` reproduces that on right-padded, trimmed batches: the
P identical slots of a row are one extra key whose logit is raised by log P (the attention
mass P equal keys would share), so the cost does not grow with the padding.
"""

import torch
from torch import nn


class PreLNTransformerLayer(nn.Module):
    """``x = LN(x) + Attn(LN(x), x, x)``; ``x = LN(x) + FF(LN(x))`` (SASRec's residuals)."""

    def __init__(self, hidden_size, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act,
                 layer_norm_eps, attention_output_dropout=True):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = nn.MultiheadAttention(hidden_size, n_heads, dropout=attn_dropout_prob, batch_first=True)
        self.ff_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        activations = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU, "tanh": nn.Tanh,
                       "sigmoid": nn.Sigmoid}
        if hidden_act not in activations:
            raise ValueError(f"hidden_act must be one of {sorted(activations)} for transformer_layout pre_ln, "
                             f"got '{hidden_act}'.")
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, inner_size), activations[hidden_act](), nn.Dropout(hidden_dropout_prob),
            nn.Linear(inner_size, hidden_size),
        )
        self.dropout = nn.Dropout(hidden_dropout_prob)
        # RecBole drops the attention output too; SASRec's authors and RecTools do not
        self.attention_dropout = self.dropout if attention_output_dropout else nn.Identity()

    def forward(self, x, attn_mask, padding_slot=False):
        """``padding_slot``: a zero vector is the first key (``attn_mask`` then has one more column)."""
        query = self.attn_norm(x)
        keys = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x], dim=1) if padding_slot else x
        attended, _ = self.attention(query, keys, keys, attn_mask=attn_mask, need_weights=False)
        x = query + self.attention_dropout(attended)
        ff_input = self.ff_norm(x)
        return ff_input + self.dropout(self.feed_forward(ff_input))


class PreLNTransformerEncoder(nn.Module):
    """Stack of :class:`PreLNTransformerLayer` and a final LayerNorm; causal attention.

    Padding must come after the real items of a row (RecBole's right padding): causal
    attention then never lets a real position see padding.
    """

    def __init__(self, n_layers, hidden_size, layer_norm_eps, n_heads, **layer_args):
        super().__init__()
        self.n_heads = n_heads
        self.layers = nn.ModuleList(
            PreLNTransformerLayer(hidden_size, n_heads=n_heads, layer_norm_eps=layer_norm_eps, **layer_args)
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x, padding_counts=None):
        """``padding_counts [B]``: padding slots each row attends to (RecTools' left padding);
        None = none (padding is never seen)."""
        length = x.shape[1]
        causal_mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)  # True = may not attend
        if padding_counts is not None:
            causal_mask = self.padding_slot_mask(causal_mask, padding_counts, x.dtype)
        for layer in self.layers:
            x = layer(x, causal_mask, padding_slot=padding_counts is not None)
        return self.final_norm(x)

    def padding_slot_mask(self, causal_mask, padding_counts, dtype):
        """Additive mask ``[B * n_heads, L, 1 + L]``: log P for the padding slot (-inf when a row
        has none), then the causal mask."""
        batch, length = len(padding_counts), causal_mask.shape[0]
        causal = torch.zeros(length, length, dtype=dtype, device=causal_mask.device).masked_fill(causal_mask, float("-inf"))
        slot = padding_counts.to(dtype).log().view(batch, 1, 1).expand(batch, length, 1)
        mask = torch.cat([slot, causal.expand(batch, length, length)], dim=2)
        return mask.repeat_interleave(self.n_heads, dim=0)
