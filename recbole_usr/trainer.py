"""RecBole's Trainer, plus per-epoch codebook health for models with semantic IDs."""

from recbole.trainer import Trainer
from recbole.utils import set_color


class SemanticIDTrainer(Trainer):
    """Re-assigns the item representation's codes at the start of every training epoch
    (``refresh_codes``: the codes that epoch trains with and its evaluation scores with),
    keeps each epoch's code churn (share of items whose codes changed) in ``code_churn``,
    and logs ``epoch_statistics()`` (codebook activation, perplexity, unique coverage of
    the codes in use) after every training epoch, kept in ``codebook_history``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.codebook_history = []
        self.code_churn = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        item_repr = getattr(self.model, "item_repr", None)
        refresh = getattr(item_repr, "refresh_codes", None)
        if refresh is not None and getattr(item_repr, "train_mode", None) == "end_to_end":
            self.code_churn.append(refresh())
        total_loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        stats = item_repr.epoch_statistics() if item_repr is not None else {}
        if stats:
            self.codebook_history.append(stats)
            self.logger.info(set_color("codebook", "blue") + f": {format_codebook_stats(stats)}")
        return total_loss


def format_codebook_stats(stats):
    """One log line: per-level activation / perplexity, unique coverage, largest collision."""
    parts = []
    for key, value in stats.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4f}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key}={value}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{key}=[" + ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in value) + "]")
    return " ".join(parts)
