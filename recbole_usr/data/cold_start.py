"""Cold-item split: a seeded fraction of items never appears in any training batch.

``cold_item_ratio`` (e.g. 0.1) draws that fraction of the items (seed ``cold_item_seed``,
else ``seed``). Their interactions are removed from every user's sequence *before*
RecBole's prefix augmentation, except where the interaction is one of the user's
evaluation targets (the last two with ``LS: valid_and_test``, the last one with
``valid_only`` / ``test_only``). Hence:

- no training row holds a cold item, neither as target nor in ``item_id_list`` (for
  RecBole's prefixes and for whole-sequence rows alike, which are built from them);
- validation / test rows whose target is a cold item are kept: they make the ``cold``
  slice of :mod:`recbole_usr.evaluation`;
- evaluation histories contain no cold item either, except that the test row's history
  ends with the validation item, which may be cold (as for any leave-one-out protocol);
- evaluation targets are the same interactions as without the split; earlier cold
  interactions simply vanish from the histories ("the item did not exist yet").

A user left with too few interactions for RecBole to make those evaluation rows
(fewer than ``n_eval + 2``) loses its cold evaluation targets too, so that none of them
can slide into the training split. The split is enforced again after ``build()``.

Models are unchanged: RecBole's SASRec keeps an (untrained) ID row for every cold item
and UnifiedSASRec's semantic representations reach them through shared codes. The
semantic-ID tokenizer (k-means, RQ, SentencePiece) is fitted on the other items only
(:mod:`recbole_usr.semantic_id_artifact`); held-out items are encoded by it, frozen. Note that
full-softmax (CE) training still scores cold items as negatives, as RecBole does for
any item seen only in evaluation.

Use :func:`create_dataset` instead of RecBole's: it wraps whichever dataset class RecBole
would pick for the model (``UnifiedSASRecDataset``, ``SequentialDataset``, ...).
"""

import importlib

import numpy as np
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.dataset import SequentialDataset
from recbole.utils import ModelType

from recbole_usr.compat import recbole_future_warnings_silenced
from recbole_usr.data.whole_sequence import WholeSequenceDataset

LEAVE_ONE_OUT_EVAL_ROWS = {"valid_and_test": 2, "valid_only": 1, "test_only": 1}


def draw_cold_items(item_num, ratio, seed):
    """Sorted internal ids (1 .. item_num-1) of ``round(ratio * (item_num - 1))`` items."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"cold_item_ratio must be in [0, 1), got {ratio}.")
    n_real = item_num - 1
    n_cold = int(round(ratio * n_real))
    rng = np.random.RandomState(seed)
    return np.sort(rng.choice(np.arange(1, item_num), size=n_cold, replace=False)).astype(np.int64)


def cold_keep_mask(user_ids, item_ids, is_cold_item, n_eval):
    """Which interactions to keep; rows sorted by user then time, each user's rows contiguous.

    Cold interactions are dropped unless among the user's last ``n_eval``; when a user's
    kept sequence is then shorter than ``n_eval + 2`` (RecBole would not make ``n_eval``
    evaluation rows from it), all its cold interactions are dropped.
    """
    user_ids = np.asarray(user_ids)
    cold = np.asarray(is_cold_item)[np.asarray(item_ids)]
    if len(user_ids) == 0:
        return np.zeros(0, dtype=bool)
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    sizes = np.diff(np.r_[starts, len(user_ids)])
    group = np.repeat(np.arange(len(starts)), sizes)
    from_end = np.repeat(starts + sizes, sizes) - 1 - np.arange(len(user_ids))
    keep = ~cold | (from_end < n_eval)
    kept_per_user = np.bincount(group, weights=keep, minlength=len(starts))
    too_short = kept_per_user[group] < n_eval + 2
    return keep & ~(cold & too_short)


def eval_rows_per_user(config):
    split = config["eval_args"]["split"]
    mode = split.get("LS") if isinstance(split, dict) else None
    if mode not in LEAVE_ONE_OUT_EVAL_ROWS:
        raise NotImplementedError(
            f"cold_item_ratio needs a leave-one-out split (eval_args.split LS), got {split}."
        )
    return LEAVE_ONE_OUT_EVAL_ROWS[mode]


class ColdItemSplitMixin:
    """Put before a ``SequentialDataset`` subclass: removes cold items before augmentation."""

    cold_items = np.zeros(0, dtype=np.int64)

    def cold_item_ratio(self):
        return float(self.config["cold_item_ratio"] or 0.0)

    def data_augmentation(self):
        ratio = self.cold_item_ratio()
        if ratio > 0:
            self.hold_out_cold_items(ratio)
        super().data_augmentation()

    def hold_out_cold_items(self, ratio):
        seed = self.config["cold_item_seed"]
        seed = self.config["seed"] if seed is None else seed
        self.cold_items = draw_cold_items(self.item_num, ratio, seed)
        is_cold = np.zeros(self.item_num, dtype=bool)
        is_cold[self.cold_items] = True
        self.sort(by=[self.uid_field, self.time_field], ascending=True)  # as the augmentation does
        keep = cold_keep_mask(
            self.inter_feat[self.uid_field].numpy(),
            self.inter_feat[self.iid_field].numpy(),
            is_cold,
            eval_rows_per_user(self.config),
        )
        self.users_before_cold_split = len(np.unique(self.inter_feat[self.uid_field].numpy()))
        removed = int((~keep).sum())
        kept_cold = int(is_cold[self.inter_feat[self.iid_field].numpy()[keep]].sum())
        self.inter_feat = self.inter_feat[np.flatnonzero(keep)]
        self.logger.info(
            f"Cold-item split: {len(self.cold_items)} of {self.item_num - 1} items held out of training "
            f"(seed {seed}); {removed} interactions removed, {kept_cold} kept as evaluation targets."
        )

    def build(self):
        datasets = super().build()
        if len(self.cold_items):
            assert_no_cold_items(datasets[0], self.cold_items)
            users = self.users_before_cold_split
            tested = len(np.unique(datasets[-1].inter_feat[self.uid_field].numpy()))
            if tested < users:
                self.logger.info(
                    f"Cold-item split: {users - tested} of {users} users have too few interactions left "
                    "for a test row (or none at all) and are not tested."
                )
        return datasets


def assert_no_cold_items(train_dataset, cold_items):
    """Raise if any training row holds a cold item as target or in its history."""
    feat = train_dataset.inter_feat
    found = np.isin(feat[train_dataset.iid_field].numpy(), cold_items).any()
    list_field = getattr(train_dataset, "item_id_list_field", None)
    if list_field and list_field in feat:
        found = found or np.isin(feat[list_field].numpy(), cold_items).any()
    if found:
        raise RuntimeError("Cold-item split violated: a held-out item is in the training split.")


def recbole_dataset_class(config):
    """The class RecBole's ``create_dataset`` would build for ``config``."""
    module = importlib.import_module("recbole.data.dataset")
    name = config["model"] + "Dataset"
    if hasattr(module, name):
        return getattr(module, name)
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        return SequentialDataset
    return None


class ColdItemSequentialDataset(ColdItemSplitMixin, SequentialDataset):
    """RecBole's ``SequentialDataset`` (SASRec, GRU4Rec, ...) with the cold-item split."""


class ColdItemWholeSequenceDataset(ColdItemSplitMixin, WholeSequenceDataset):
    """UnifiedSASRec's dataset with the cold-item split (applied before whole-sequence rows)."""


NAMED_CLASSES = {SequentialDataset: ColdItemSequentialDataset, WholeSequenceDataset: ColdItemWholeSequenceDataset}


def cold_item_dataset_class(base):
    """``base`` (a ``SequentialDataset`` subclass) with the cold-item split.

    The two common bases get module-level classes (picklable); others a class made here.
    """
    if base in NAMED_CLASSES:
        return NAMED_CLASSES[base]
    if not issubclass(base, SequentialDataset):
        raise NotImplementedError(f"The cold-item split needs a sequential dataset, not {base.__name__}.")
    return type(f"ColdItem{base.__name__}", (ColdItemSplitMixin, base), {})


def create_dataset(config):
    """RecBole's ``create_dataset``, with the cold-item split when ``cold_item_ratio`` > 0,
    without RecBole's FutureWarnings (:func:`recbole_usr.compat.recbole_future_warnings_silenced`)."""
    with recbole_future_warnings_silenced():
        if not float(config["cold_item_ratio"] or 0.0):
            return recbole_create_dataset(config)
        base = recbole_dataset_class(config)
        if base is None:
            raise NotImplementedError(f"cold_item_ratio needs a sequential model, not {config['model']}.")
        return cold_item_dataset_class(base)(config)
