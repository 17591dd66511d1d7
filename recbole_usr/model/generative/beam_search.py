"""Beam search constrained by a :class:`~recbole_usr.model.generative.prefix_trie.PrefixTrie`.

Batched on the tensor side: one loop over the ``depth`` levels, none over users or beams.
At each level the model scores every (beam, token) pair, tokens that leave the trie get
``-inf``, and the best ``beam_size`` pairs of each user survive. Scores are sums of the
model's own log-probabilities (masking does not renormalise, as in Hugging Face's
``prefix_allowed_tokens_fn``), so a finished beam's score is the sequence log-probability
that teacher-forced scoring of the same item gives.

When a user has fewer valid paths than ``beam_size`` the extra beams are dead: score
``-inf``, item ``-1``.
"""

from dataclasses import dataclass

import torch


@dataclass
class BeamSearchOutput:
    items: torch.Tensor  # [B, W] item ids, best first; -1 for dead beams
    scores: torch.Tensor  # [B, W] sequence log-probabilities; -inf for dead beams
    codes: torch.Tensor  # [B, W, depth] the generated paths


def constrained_beam_search(step_log_probs, trie, batch_size, beam_size, device=None):
    """Best ``beam_size`` valid paths per user, best first.

    ``step_log_probs(level, tokens, parents)`` takes the paths so far ``tokens``
    ``[B, W, level]`` (``W = 1`` at level 0) and returns log-probabilities
    ``[B, W, trie.vocab_sizes[level]]`` of the next token. ``parents`` ``[B, W]`` says which
    of the previous call's beams each path extends (``None`` at level 0), so a model that
    caches per-beam state (a decoder's keys and values) can reorder it instead of
    recomputing it; a stateless model ignores it.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if device is None:
        device = trie.next_state_0.device
    state = trie.root(batch_size, 1, device=device)  # [B, W]
    scores = torch.zeros(batch_size, 1, device=device)
    tokens = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    parents = None
    for level in range(trie.depth):
        log_probs = step_log_probs(level, tokens, parents)
        vocab = trie.vocab_sizes[level]
        if log_probs.shape != (batch_size, state.shape[1], vocab):
            raise ValueError(
                f"step_log_probs returned {tuple(log_probs.shape)} at level {level}, "
                f"expected {(batch_size, state.shape[1], vocab)}"
            )
        transitions = trie.transitions(level, state)  # [B, W, V]
        candidates = (scores.unsqueeze(-1) + log_probs).masked_fill(transitions < 0, float("-inf"))
        width = min(beam_size, candidates.shape[1] * vocab)
        scores, flat = candidates.view(batch_size, -1).topk(width, dim=1)  # [B, W']
        parents, token = flat // vocab, flat % vocab
        state = transitions.view(batch_size, -1).gather(1, flat).masked_fill(torch.isinf(scores), -1)
        previous = tokens.gather(1, parents.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        tokens = torch.cat([previous, token.unsqueeze(-1)], dim=-1)
    return BeamSearchOutput(items=state, scores=scores, codes=tokens)
