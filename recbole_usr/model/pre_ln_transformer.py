"""Pre-LayerNorm causal transformer: the original SASRec's block layout (Kang & McAuley 2018;
RecTools' and the eSASRec benchmark's SASRec), offered beside RecBole's post-LN encoder.

Why: RecBole normalises the input (``LayerNorm(item + position)``) and every sub-layer's
output (post-LN). The original SASRec normalises each sub-layer's input instead, adds
the attention output to the normalised query, and ends with one LayerNorm. Which layout
trains better is an empirical question (``transformer_layout`` in UnifiedSASRec.yaml).
"""

import torch
from torch import nn


class PreLNTransformerLayer(nn.Module):
    """``x = LN(x) + Attn(LN(x), x, x)``; ``x = LN(x) + FF(LN(x))`` (SASRec's residuals)."""

    def __init__(self, hidden_size, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act,
                 layer_norm_eps):
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

    def forward(self, x, causal_mask):
        query = self.attn_norm(x)
        attended, _ = self.attention(query, x, x, attn_mask=causal_mask, need_weights=False)
        x = query + self.dropout(attended)
        ff_input = self.ff_norm(x)
        return ff_input + self.dropout(self.feed_forward(ff_input))


class PreLNTransformerEncoder(nn.Module):
    """Stack of :class:`PreLNTransformerLayer` and a final LayerNorm; causal attention.

    Padding must come after the real items of a row (RecBole's right padding): causal
    attention then never lets a real position see padding.
    """

    def __init__(self, n_layers, hidden_size, layer_norm_eps, **layer_args):
        super().__init__()
        self.layers = nn.ModuleList(
            PreLNTransformerLayer(hidden_size, layer_norm_eps=layer_norm_eps, **layer_args) for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x):
        length = x.shape[1]
        causal_mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)  # True = may not attend
        for layer in self.layers:
            x = layer(x, causal_mask)
        return self.final_norm(x)
