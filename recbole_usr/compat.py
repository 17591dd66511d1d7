"""Make RecBole 1.2.1 run on today's numpy, torch and setuptools, without forking it.

Why a shim rather than pins: RecBole 1.2.1 is the latest release, and pinning numpy<2 or
torch<2.6 would lock users out of current wheels (and of the CPU torch 2.13 build).
Each fix is small, scoped to RecBole and tested (tests/test_compat.py). Two things are pins
in setup.cfg instead: ``pandas<3`` (its copy-on-write breaks ``Dataset._remap`` deep inside
RecBole) and ``setuptools<82`` (see 3).

What ``import recbole_usr`` changes in the process, all of it here:

1. numpy. RecBole reads numpy 1 aliases that numpy removed (``np.float`` in its metrics,
   ``Interaction`` and ``Dataset``, ``np.str`` in its hyper-tuning plot), and its
   ``Config.compatibility_settings`` writes ``np.int = np.int_``, ``np.float = np.float64``,
   ... into numpy for the whole process on every ``Config`` (and fails on numpy 2, which
   lacks the ``np.float_`` it reads). Instead those RecBole modules get their own ``np``, numpy
   plus the missing aliases with numpy 1's meanings (``np.float`` is ``float``, ``np.int`` is
   ``int``, ...), and ``Config.compatibility_settings`` leaves numpy alone, so user code
   still sees numpy 2's errors. One alias stays global: ``np.bool8`` (numpy 1's
   ``np.bool_``), because ray 2.6, which ``recbole.quick_start`` imports, reads it in class
   bodies at import time, in modules that do not exist before that import.
2. torch >= 2.6 loads with ``weights_only=True``; RecBole pickles its ``Config`` (and the
   model class) into every checkpoint, so its own loads fail. torch's default is left as it
   is: RecBole's ``Trainer.evaluate`` and ``resume_checkpoint`` (so every trainer, RecBole's
   and the plugin's) load with ``weights_only=False`` only the checkpoint the trainer saves to
   or a file the caller names (``model_file``, ``resume_file``), as does
   ``recbole_usr.quick_start.load_data_and_model``. Any other ``torch.load`` in the process
   keeps torch's safe default. Only name checkpoints you trust, as with any pickle.
3. ``recbole.quick_start`` imports ray 2.6, which imports ``pkg_resources`` (several of its
   functions, at import and in ``ray.init``), gone from setuptools >= 82. setup.cfg requires
   ``setuptools<82`` rather than faking ``pkg_resources`` here: a stand-in module would be
   seen by every library that probes for ``pkg_resources``.
4. Importing ``recbole.model.sequential_recommender`` switches autograd anomaly detection on
   for the process (RecBole's sine.py; ~1.8x slower backward passes). The package imports it
   with the caller's setting restored afterwards (:func:`keep_anomaly_detection`), so a
   user's own ``set_detect_anomaly(True)`` stays on.
"""

import builtins
import contextlib
import re
import types
import warnings

import numpy as np
import torch

# numpy 1's meaning of each alias numpy 2 removed (np.float was the builtin float, etc.).
NUMPY1_ALIASES = {
    "float": builtins.float,
    "int": builtins.int,
    "bool": builtins.bool,
    "object": builtins.object,
    "str": builtins.str,
    "complex": builtins.complex,
    "long": builtins.int,
    "unicode": builtins.str,
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
}
# RecBole modules that read a removed alias at run time (found by scanning RecBole 1.2.1).
RECBOLE_MODULES_USING_ALIASES = (
    "recbole.evaluator.metrics",
    "recbole.data.interaction",
    "recbole.data.dataset.dataset",
    "recbole.trainer.hyper_tuning",
)
# Read by ray 2.6 at import time (ray/tune/logger/tensorboardx.py, aim.py): must be on numpy.
GLOBAL_NUMPY_ALIASES = ("bool8",)


class NumpyWithAliases(types.ModuleType):
    """numpy, plus numpy 1's aliases that numpy no longer has; a module's private ``np``."""

    def __init__(self):
        super().__init__("numpy")
        for name, target in NUMPY1_ALIASES.items():
            if name not in np.__dict__:
                setattr(self, name, target)

    def __getattr__(self, name):
        return getattr(np, name)


def _leave_numpy_alone(config):
    """Replaces ``Config.compatibility_settings``: RecBole's modules have their own aliases."""


def patch_numpy():
    """Give RecBole's modules the numpy 1 aliases they read, without adding them to numpy."""
    import importlib

    from recbole.config import Config

    numpy_with_aliases = NumpyWithAliases()
    for name in RECBOLE_MODULES_USING_ALIASES:
        importlib.import_module(name).np = numpy_with_aliases
    Config.compatibility_settings = _leave_numpy_alone
    for name in GLOBAL_NUMPY_ALIASES:
        if name not in np.__dict__:
            setattr(np, name, NUMPY1_ALIASES[name])


def load_checkpoint(path, map_location="cpu"):
    """A RecBole checkpoint named by the user or saved by the trainer: it pickles the Config,
    so it needs torch's full unpickler, asked for here and nowhere else."""
    return torch.load(path, map_location=map_location, weights_only=False)


def patch_trainer_checkpoint_loading():
    """RecBole's ``Trainer.evaluate`` / ``resume_checkpoint`` with the load made explicit
    (RecBole 1.2.1's code otherwise); subclasses that call them inherit it."""
    from recbole.trainer import Trainer

    if getattr(Trainer.evaluate, "loads_checkpoint_explicitly", False):
        return
    recbole_evaluate = Trainer.evaluate

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return recbole_evaluate(self, eval_data, load_best_model=False, show_progress=show_progress)

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        self.saved_model_file = resume_file
        checkpoint = load_checkpoint(resume_file, self.device)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning(
                "Architecture configuration given in config file is different from that of checkpoint. "
                "This may yield an exception while state_dict is being loaded."
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    evaluate.__doc__ = recbole_evaluate.__doc__
    evaluate.loads_checkpoint_explicitly = True
    Trainer.evaluate = evaluate
    Trainer.resume_checkpoint = resume_checkpoint


@contextlib.contextmanager
def keep_anomaly_detection():
    """Restore autograd anomaly detection (and its NaN check) as the caller had it: RecBole's
    sine.py turns it on for the process when its model package is first imported."""
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(enabled, check_nan=check_nan)


# FutureWarnings RecBole 1.2.1 triggers on every run, each a (module it is attributed to,
# message) pair:
# - pandas: ``feat[field].fillna(..., inplace=True)`` in Dataset._fill_nan (dataset.py lines
#   648 and 650) while reading any dataset, chained assignment that pandas 3 will no longer
#   honour (pandas<3 is pinned in setup.cfg, so the message only repeats itself);
# - torch: ``amp.GradScaler(enabled=...)`` at the start of every training epoch (trainer.py
#   line 235), a deprecated spelling that still works.
RECBOLE_FUTURE_WARNINGS = (
    ("recbole.data.dataset.dataset", "A value is trying to be set on a copy of a DataFrame or Series "
                                     "through chained assignment using an inplace method"),
    ("recbole.trainer.trainer", "`torch.cuda.amp.GradScaler(args...)` is deprecated"),
)


@contextlib.contextmanager
def recbole_future_warnings_silenced():
    """Within the context, ignore exactly the FutureWarnings listed above, and only when
    RecBole's own module raises them; every other warning, the caller's included, shows."""
    with warnings.catch_warnings():
        for module, message in RECBOLE_FUTURE_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message), category=FutureWarning,
                                    module=re.escape(module) + "$")
        yield


def apply():
    patch_numpy()
    patch_trainer_checkpoint_loading()
