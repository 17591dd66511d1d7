"""RecBole's Trainer, plus per-epoch codebook health for models with semantic IDs."""

from recbole.trainer import Trainer
from recbole.utils import set_color


class SemanticIDTrainer(Trainer):
    """Logs the item representation's ``epoch_statistics()`` (codebook activation,
    perplexity, unique coverage) after every training epoch; keeps them in ``history``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.codebook_history = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        total_loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        item_repr = getattr(self.model, "item_repr", None)
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
