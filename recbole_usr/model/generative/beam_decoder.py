"""A pre-norm transformer decoder (as T5's) that decodes many beams per user cheaply.

Two modes share the weights:

- :meth:`BeamDecoder.forward`: teacher forcing over whole target sequences ``[N, T, H]``
  with causal self-attention (training, and exact scoring of given items);
- :meth:`BeamDecoder.step`: one new token per beam, ``[B * W, 1, H]``, attending to the
  beam's cached keys and values (:class:`DecoderCache`, reordered with
  :meth:`DecoderCache.select` when beams are pruned), so a depth-D search computes each
  position once instead of re-running the whole prefix at every level.

In both modes cross-attention folds a user's beams into one query sequence
``[B, W * T, H]`` over that user's memory ``[B, S, H]`` (exact: queries attend
independently), and the memory's keys and values are projected once per search
(:meth:`BeamDecoder.memory_keys_values`), never copied per beam.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Attention whose key/value projection is a separate call, so it can be cached."""

    def __init__(self, hidden_size, n_heads, dropout):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden size {hidden_size} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key_value = nn.Linear(hidden_size, 2 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def split_heads(self, x):  # [N, T, H] -> [N, heads, T, H / heads]
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def keys_values(self, x):
        """Projected keys and values ``[N, heads, T, H / heads]`` of ``x`` ``[N, T, H]``."""
        keys, values = self.key_value(x).chunk(2, dim=-1)
        return self.split_heads(keys), self.split_heads(values)

    def forward(self, x, keys, values, mask=None, causal=False):
        """``x`` ``[N, T, H]`` attends to ``keys``/``values``; ``mask`` bool, True = may attend."""
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(
            self.split_heads(self.query(x)), keys, values, attn_mask=mask, dropout_p=dropout, is_causal=causal
        )
        return self.out(out.transpose(1, 2).flatten(2))


class BeamDecoderLayer(nn.Module):
    """Self-attention, cross-attention and a ReLU feed-forward block, each pre-normed and residual."""

    def __init__(self, hidden_size, n_heads, inner_size, dropout, attn_dropout, layer_norm_eps):
        super().__init__()
        self.self_attn = MultiHeadAttention(hidden_size, n_heads, attn_dropout)
        self.cross_attn = MultiHeadAttention(hidden_size, n_heads, attn_dropout)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, inner_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner_size, hidden_size)
        )
        self.norm_self = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.norm_cross = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.norm_ff = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory_kv, memory_mask, past=None, n_beams=1):
        """``x`` ``[B * n_beams, T, H]``; returns the output and this layer's self-attention keys/values.

        With ``past`` (cached keys/values of earlier positions) ``x`` holds the new positions
        only and attends to all of ``past``; without, self-attention is causal over ``x``.
        """
        rows, length, hidden = x.shape
        h = self.norm_self(x)
        keys, values = self.self_attn.keys_values(h)
        if past is not None:
            keys, values = torch.cat([past[0], keys], dim=2), torch.cat([past[1], values], dim=2)
        causal = past is None and length > 1
        x = x + self.dropout(self.self_attn(h, keys, values, causal=causal))
        h = self.norm_cross(x).reshape(rows // n_beams, n_beams * length, hidden)
        attended = self.cross_attn(h, *memory_kv, mask=memory_mask)
        x = x + self.dropout(attended.reshape(rows, length, hidden))
        x = x + self.dropout(self.feed_forward(self.norm_ff(x)))
        return x, (keys, values)


@dataclass
class DecoderCache:
    """Self-attention keys/values of every layer for the positions decoded so far, one row per beam."""

    layers: list  # per layer (keys, values), each [B * W, heads, t, H / heads]

    def select(self, parents):
        """Rows of the beams that survived: ``parents`` ``[B, W']`` indexes the current ``W`` beams per user."""
        batch, width = parents.shape

        def pick(t):
            per_user = t.unflatten(0, (batch, -1))  # [B, W, heads, t, d]
            index = parents.view(batch, width, 1, 1, 1).expand(-1, -1, *per_user.shape[2:])
            return per_user.gather(1, index).flatten(0, 1)

        return DecoderCache([(pick(k), pick(v)) for k, v in self.layers])


class BeamDecoder(nn.Module):
    """A stack of :class:`BeamDecoderLayer` and a final LayerNorm."""

    def __init__(self, n_layers, hidden_size, n_heads, inner_size, dropout, attn_dropout, layer_norm_eps):
        super().__init__()
        self.layers = nn.ModuleList(
            BeamDecoderLayer(hidden_size, n_heads, inner_size, dropout, attn_dropout, layer_norm_eps)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def memory_keys_values(self, memory, memory_padding):
        """Per layer cross-attention keys/values of ``memory`` ``[B, S, H]``, and the attention mask."""
        mask = (~memory_padding)[:, None, None, :]  # [B, 1, 1, S], True = real
        return [layer.cross_attn.keys_values(memory) for layer in self.layers], mask

    def forward(self, x, memory_kv, memory_mask):
        """Teacher forcing: embedded inputs ``[B, T, H]`` -> outputs ``[B, T, H]`` (causal)."""
        for layer, kv in zip(self.layers, memory_kv):
            x, _ = layer(x, kv, memory_mask)
        return self.norm(x)

    def step(self, x, memory_kv, memory_mask, cache=None, n_beams=1):
        """One new position per beam: ``x`` ``[B * n_beams, 1, H]`` -> output ``[B * n_beams, H]`` and the cache."""
        layers = []
        for i, (layer, kv) in enumerate(zip(self.layers, memory_kv)):
            x, past = layer(x, kv, memory_mask, None if cache is None else cache.layers[i], n_beams)
            layers.append(past)
        return self.norm(x[:, -1]), DecoderCache(layers)
