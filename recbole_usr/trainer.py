"""RecBole's Trainer, plus loss names and per-epoch codebook health for the plugin's models."""

from recbole.trainer import Trainer
from recbole.utils import set_color


def named_losses(model, losses):
    """``{name: value}`` of one epoch's ``losses`` (a number or a tuple): the names the model
    declares in ``loss_names`` when they fit, else RecBole's (``train_loss``, ``train_loss1..n``)."""
    values = tuple(losses) if isinstance(losses, tuple) else (losses,)
    names = tuple(getattr(model, "loss_names", ()) or ())
    if len(names) != len(values):
        numbered = tuple(f"train_loss{i + 1}" for i in range(len(values)))
        names = numbered if isinstance(losses, tuple) else ("train_loss",)
    return dict(zip(names, (float(value) for value in values)))


class NamedLossTrainer(Trainer):
    """Logs each epoch's losses by the model's ``loss_names`` (``rec_loss``, ``rq_loss``,
    ``recon_loss``) instead of RecBole's ``train_loss1..3``, in the log and in TensorBoard;
    a model without names is logged as RecBole logs it."""

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        if not getattr(self.model, "loss_names", None):
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        places = self.config["loss_decimal_place"] or 4
        output = (set_color("epoch %d training", "green") + " [" + set_color("time", "blue") + ": %.2fs, ") % (
            epoch_idx, e_time - s_time)
        named = named_losses(self.model, losses).items()
        return output + ", ".join(set_color(name, "blue") + f": {value:.{places}f}" for name, value in named) + "]"

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        if not getattr(self.model, "loss_names", None):
            return super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag)
        for name, value in named_losses(self.model, losses).items():
            self.tensorboard.add_scalar(f"{tag}/{name}", value, epoch_idx)


class SemanticIDTrainer(NamedLossTrainer):
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
