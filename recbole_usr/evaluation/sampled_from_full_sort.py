"""Score RecBole's sampled evaluation (uniN / popN) from one full score row per history.

RecBole's sampled protocols call ``predict`` on one row per (user, candidate), so a
sequential model such as RecBole's SASRec encodes each user's history N + 1 times (uni99 on
Amazon Beauty: 2.2 million forward passes instead of 22 thousand). For a model whose
``predict(row)`` equals ``full_sort_predict(row)[candidate]``, which holds for RecBole's
sequential models, encoding each distinct history once and reading the candidates' scores
from its full score row gives the same metrics at a fraction of the cost. The equality is
checked on the first batch; a model that fails it, or has no ``full_sort_predict``, keeps
its own ``predict``.

Plugin models that already group histories in ``predict`` set
``predict_groups_histories = True`` and are left alone.
"""

import contextlib
from logging import getLogger

import torch

from recbole_usr.model.distinct_histories import distinct_histories


class FullSortSampledPredict:
    """A drop-in ``predict`` for sampled evaluation; see the module docstring."""

    def __init__(self, model, rtol=1e-4, atol=1e-4):
        self.model = model
        self.own_predict = model.predict
        self.rtol, self.atol = rtol, atol
        self.agrees = None  # None: not checked yet; then True (used) or False (fell back)

    def history_columns(self, interaction):
        names = [getattr(self.model, name, None) for name in ("USER_ID", "ITEM_SEQ", "ITEM_SEQ_LEN")]
        return [interaction[name] for name in names if name is not None and name in interaction]

    def scores_from_full_sort(self, interaction):
        columns = self.history_columns(interaction)
        if not columns:
            raise NotImplementedError("no user or history column to group rows by")
        _, row_of = distinct_histories(*columns)
        rows = torch.arange(len(row_of), device=row_of.device)
        first_row = torch.full((int(row_of.max()) + 1,), len(row_of), device=row_of.device)
        first_row = first_row.scatter_reduce(0, row_of, rows, reduce="amin")  # one row per history
        full = self.model.full_sort_predict(interaction[first_row]).view(len(first_row), -1)
        return full[row_of, interaction[self.model.ITEM_ID]]

    def __call__(self, interaction):
        if self.agrees is False:
            return self.own_predict(interaction)
        if self.agrees is None:
            own = self.own_predict(interaction)
            try:
                grouped = self.scores_from_full_sort(interaction)
                self.agrees = bool(torch.allclose(grouped, own, rtol=self.rtol, atol=self.atol))
            except (NotImplementedError, AttributeError, RuntimeError) as error:
                getLogger().warning(f"sampled evaluation: {type(self.model).__name__} keeps its own predict ({error})")
                self.agrees = False
                return own
            if not self.agrees:
                getLogger().warning(f"sampled evaluation: {type(self.model).__name__}'s predict differs from its "
                                    "full_sort_predict; keeping its own predict (one forward pass per row)")
            return own
        return self.scores_from_full_sort(interaction)


@contextlib.contextmanager
def sampled_predict_from_full_sort(model):
    """Within the block, ``model.predict`` scores sampled rows from one full score row per
    distinct history (unless the model groups histories itself). Yields the wrapper, or
    ``None`` when the model is left alone."""
    if getattr(model, "predict_groups_histories", False):
        yield None
        return
    wrapper = FullSortSampledPredict(model)
    model.predict = wrapper
    try:
        yield wrapper
    finally:
        del model.predict  # back to the class's own method
