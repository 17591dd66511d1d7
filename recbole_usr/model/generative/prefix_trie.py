"""A prefix trie over item codes, stored as tensors so constrained decoding is a gather.

Every valid item is a path of ``depth`` tokens, token ``t`` at level ``l`` taken from
``range(vocab_sizes[l])``. Level ``l`` has ``n_prefixes[l]`` distinct prefixes of length
``l`` (level 0: the empty prefix, id 0), each with a dense row of ``next_state[l]``
``[n_prefixes[l], vocab_sizes[l]]``: the id of the prefix extended by that token at level
``l + 1``, or, at the last level, the item the full path names; ``-1`` where the extension
leads to no item. ``allowed(l, state)`` is then ``next_state[l][state] >= 0``.

A state of ``-1`` is a dead path (an invalid prefix, or a beam with no valid continuation):
every query on it answers "nothing allowed" and it stays ``-1``.

Memory: ``sum_l n_prefixes[l] * vocab_sizes[l]`` int64 entries (Beauty, 12k items, 3 x 256
codes + 1 de-duplication level: about 3.4M entries, 27 MB).
"""

import torch
from torch import nn

DEAD = -1


class PrefixTrie(nn.Module):
    """Valid code paths of a catalogue. ``codes`` ``[N, depth]`` (distinct rows) name ``item_ids`` ``[N]``."""

    def __init__(self, codes, item_ids=None, vocab_sizes=None):
        super().__init__()
        codes = torch.as_tensor(codes, dtype=torch.long).cpu()
        if codes.dim() != 2 or codes.shape[0] == 0:
            raise ValueError(f"codes must be a non-empty [N, depth] table, got shape {tuple(codes.shape)}")
        n, depth = codes.shape
        item_ids = torch.arange(n) if item_ids is None else torch.as_tensor(item_ids, dtype=torch.long).cpu()
        if item_ids.shape != (n,):
            raise ValueError(f"item_ids must have one id per code row ({n}), got shape {tuple(item_ids.shape)}")
        if codes.min() < 0:
            raise ValueError("codes must be non-negative")
        if vocab_sizes is None:
            vocab_sizes = (codes.max(dim=0).values + 1).tolist()
        vocab_sizes = [int(v) for v in vocab_sizes]
        if len(vocab_sizes) != depth:
            raise ValueError(f"{len(vocab_sizes)} vocabulary sizes for codes of depth {depth}")
        too_big = [l for l in range(depth) if int(codes[:, l].max()) >= vocab_sizes[l]]
        if too_big:
            raise ValueError(f"codes exceed the vocabulary size at levels {too_big}")
        if torch.unique(codes, dim=0).shape[0] != n:
            raise ValueError("codes are not unique: two items share a path (add a de-duplication level)")

        self.depth = depth
        self.vocab_sizes = vocab_sizes
        self.n_items = n
        self.n_prefixes = []
        # prefix id of every row at every level; level 0: the empty prefix
        prefix_of_row = torch.zeros(n, dtype=torch.long)
        for level in range(depth):
            n_prefixes = int(prefix_of_row.max()) + 1
            table = torch.full((n_prefixes, vocab_sizes[level]), DEAD, dtype=torch.long)
            if level + 1 < depth:
                # children: distinct (prefix, token) pairs, numbered in sorted order
                pair = prefix_of_row * vocab_sizes[level] + codes[:, level]
                unique_pairs, child_of_row = torch.unique(pair, return_inverse=True)
                table.view(-1)[unique_pairs] = torch.arange(unique_pairs.numel())
                prefix_of_row = child_of_row
            else:
                table[prefix_of_row, codes[:, level]] = item_ids
            self.n_prefixes.append(n_prefixes)
            self.register_buffer(f"next_state_{level}", table, persistent=False)

    def next_state_table(self, level):
        return getattr(self, f"next_state_{level}")

    def root(self, *shape, device=None):
        """Start states (the empty prefix) of the given shape."""
        device = device if device is not None else self.next_state_0.device
        return torch.zeros(shape, dtype=torch.long, device=device)

    def transitions(self, level, state):
        """``next_state`` rows ``[*state.shape, vocab_sizes[level]]`` for ``state``; all ``-1`` on dead states."""
        rows = self.next_state_table(level)[state.clamp(min=0)]
        return rows.masked_fill((state < 0).unsqueeze(-1), DEAD)

    def allowed(self, level, state):
        """Bool mask ``[*state.shape, vocab_sizes[level]]`` of tokens that keep ``state`` on a valid path."""
        return self.transitions(level, state) >= 0

    def step(self, level, state, token):
        """State after appending ``token`` at ``level`` (``-1`` when that leaves every valid path).

        At the last level the state is the item id the full path names.
        """
        table = self.next_state_table(level)
        token = token.to(table.device)
        valid = (state >= 0) & (token >= 0) & (token < self.vocab_sizes[level])
        nxt = table[state.clamp(min=0), token.clamp(0, self.vocab_sizes[level] - 1)]
        return nxt.masked_fill(~valid, DEAD)

    def walk(self, prefixes):
        """State reached by each row of ``prefixes`` ``[B, d]`` (``d <= depth``), ``-1`` if invalid."""
        prefixes = torch.as_tensor(prefixes, dtype=torch.long, device=self.next_state_0.device)
        if prefixes.dim() != 2 or prefixes.shape[1] > self.depth:
            raise ValueError(f"prefixes must be [B, d] with d <= {self.depth}, got {tuple(prefixes.shape)}")
        state = self.root(prefixes.shape[0])
        for level in range(prefixes.shape[1]):
            state = self.step(level, state, prefixes[:, level])
        return state

    def contains(self, prefixes):
        """Bool ``[B]``: does each row of ``prefixes`` ``[B, d]`` start some valid item's path?"""
        return self.walk(prefixes) >= 0

    def lookup(self, codes):
        """Item id ``[B]`` named by each full path ``codes`` ``[B, depth]``; ``-1`` where none."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        if codes.dim() != 2 or codes.shape[1] != self.depth:
            raise ValueError(f"lookup needs full paths [B, {self.depth}], got {tuple(codes.shape)}")
        return self.walk(codes)

    def extra_repr(self):
        return f"depth={self.depth}, vocab_sizes={self.vocab_sizes}, n_items={self.n_items}, n_prefixes={self.n_prefixes}"
