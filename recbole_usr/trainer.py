"""RecBole's Trainer, plus loss names and per-epoch codebook health for the plugin's models."""

from time import time

import torch
from torch import optim

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_usr.config_values import config_value


def named_losses(model, losses):
    """``{name: value}`` of one epoch's ``losses`` (a number or a tuple): the names the model
    declares in ``loss_names`` when they fit, else RecBole's (``train_loss``, ``train_loss1..n``)."""
    values = tuple(losses) if isinstance(losses, tuple) else (losses,)
    names = tuple(getattr(model, "loss_names", ()) or ())
    if len(names) != len(values):
        numbered = tuple(f"train_loss{i + 1}" for i in range(len(values)))
        names = numbered if isinstance(losses, tuple) else ("train_loss",)
    return dict(zip(names, (float(value) for value in values)))


def learning_rate_schedule(optimizer, config):
    """``lr_schedule: inverse_sqrt``: the learning rate stays for ``lr_constant_steps`` optimizer
    steps, then decays as ``sqrt(lr_constant_steps / step)`` (TIGER's schedule); stepped by a
    hook after every optimizer step, so RecBole's training loop needs no change. ``~``: constant."""
    schedule = config_value(config, "lr_schedule", None)
    if schedule is None:
        return None
    if schedule != "inverse_sqrt":
        raise ValueError(f"lr_schedule must be inverse_sqrt or ~, got '{schedule}'.")
    constant = max(int(config_value(config, "lr_constant_steps", 10000)), 1)
    scheduler = optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (constant / max(step, 1)) ** 0.5))
    optimizer.register_step_post_hook(lambda *_: scheduler.step())
    return scheduler


class TimeBudgetSpent(Exception):
    """Raised at an epoch boundary once ``train_time_budget`` seconds of training have passed."""


class NamedLossTrainer(Trainer):
    """Logs each epoch's losses by the model's ``loss_names`` (``rec_loss``, ``rq_loss``,
    ``recon_loss``) instead of RecBole's ``train_loss1..3``, in the log and in TensorBoard;
    a model without names is logged as RecBole logs it.

    Properties RecBole's Trainer lacks: ``adam_betas`` (Adam / AdamW moments; RecTools'
    SASRec uses [0.9, 0.98]), ``lr_schedule`` / ``lr_constant_steps`` (:func:`learning_rate_schedule`)
    and ``train_time_budget`` (seconds: no epoch starts after it, and the best checkpoint so
    far is what gets tested; ``stopped_by_time_budget`` says so).
    """

    stopped_by_time_budget = False

    def _build_optimizer(self, **kwargs):
        betas = config_value(self.config, "adam_betas", None)
        learner = kwargs.get("learner", self.learner)
        if betas is None or learner.lower() not in ("adam", "adamw"):
            optimizer = super()._build_optimizer(**kwargs)
        else:
            optimizer = (optim.Adam if learner.lower() == "adam" else optim.AdamW)(
                kwargs.get("params", self.model.parameters()), lr=kwargs.get("learning_rate", self.learning_rate),
                weight_decay=kwargs.get("weight_decay", self.weight_decay), betas=tuple(betas))
        self.lr_scheduler = learning_rate_schedule(optimizer, self.config)
        return optimizer

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._fit_started = time()
        try:
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        except TimeBudgetSpent:
            self.stopped_by_time_budget = True
            self.logger.warning(f"train_time_budget ({self.config['train_time_budget']} s) spent: stopped before "
                                f"epoch {len(self.train_loss_dict)}; the best checkpoint so far is kept.")
            return self.best_valid_score, self.best_valid_result

    def check_time_budget(self, epoch_idx):
        """Raise :class:`TimeBudgetSpent` instead of starting an epoch past ``train_time_budget``."""
        budget = config_value(self.config, "train_time_budget", None)
        started = getattr(self, "_fit_started", None)
        if budget is not None and started is not None and epoch_idx > self.start_epoch and time() - started >= budget:
            raise TimeBudgetSpent()

    def before_training_epoch(self, epoch_idx):
        """Called once the epoch is sure to run (the time budget allows it); nothing here."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.check_time_budget(epoch_idx)
        self.before_training_epoch(epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)

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

    def before_training_epoch(self, epoch_idx):
        item_repr = getattr(self.model, "item_repr", None)
        refresh = getattr(item_repr, "refresh_codes", None)
        if refresh is not None and getattr(item_repr, "train_mode", None) == "end_to_end":
            self.code_churn.append(refresh())

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        total_loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        item_repr = getattr(self.model, "item_repr", None)
        stats = item_repr.epoch_statistics() if item_repr is not None else {}
        if stats:
            self.codebook_history.append(stats)
            self.logger.info(set_color("codebook", "blue") + f": {format_codebook_stats(stats)}")
        return total_loss


class BeamSearchTrainer(NamedLossTrainer):
    """For generative models (TIGER, SIDDecoder): also logs evaluation time per 1,000 users, the cost of beam search."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_timings = []  # (users, seconds) per evaluation

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        start = time()
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if eval_data:
            seconds = time() - start
            users = len(eval_data._dataset)
            self.eval_timings.append((users, seconds))
            self.logger.info(
                set_color("evaluation time", "blue")
                + f": {users} users in {seconds:.2f}s = {1000 * seconds / max(users, 1):.2f}s per 1,000 users"
                + f" (beam_size={getattr(self.model, 'beam_size', '-')})"
            )
        return result


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
