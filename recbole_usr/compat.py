"""Make RecBole 1.2.1 run on today's numpy, torch and setuptools, without forking it.

Why a shim rather than pins: RecBole 1.2.1 is the latest release, and pinning numpy<2 or
torch<2.6 would lock users out of current wheels (and of the CPU torch 2.13 build).
Each fix below is small, local and tested (tests/test_compat.py); pandas is the
exception: pandas 3's copy-on-write changes break ``Dataset._remap`` deep inside
RecBole, so setup.cfg pins ``pandas<3`` instead.

1. numpy 2 removed aliases that RecBole's ``Config.compatibility_settings`` reads
   (``np.float_``, ``np.complex_``, ``np.unicode_``), that ray 2.6's tensorboard
   logger reads (``np.bool8``), and that RecBole's metrics read (``np.float``, ...; set by
   RecBole's ``Config`` itself, so missing when a checkpoint is only unpickled, e.g. by
   ``python -m recbole_usr.evaluate``). We restore them as plain aliases.
2. torch >= 2.6 loads checkpoints with ``weights_only=True``; RecBole pickles its
   ``Config`` into every checkpoint, so its own ``torch.load`` calls fail. We set
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (read by torch at call time) unless the user
   set it. Only load checkpoints you trust, as with any pickle.
3. ``recbole.quick_start`` imports ray, which needs ``pkg_resources`` (gone from
   setuptools >= 82). This package never imports ``recbole.quick_start``: our
   ``recbole_usr.quick_start`` replaces it.
"""

import os
import warnings

import numpy as np

_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
    # RecBole's metrics and layers use these; its ``Config.compatibility_settings`` sets them,
    # but a process that only unpickles a Config from a checkpoint never runs it.
    "float": np.float64,
    "int": np.int_,
    "bool": np.bool_,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
}


def patch_numpy():
    """Restore numpy 1 aliases that RecBole and ray still use."""
    for name, target in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, target)


def patch_torch_load():
    """Let RecBole's own ``torch.load`` calls read its pickled checkpoints."""
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def quiet_known_warnings():
    """Warnings RecBole triggers on every run that a user cannot act on."""
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    warnings.filterwarnings("ignore", message=".*torch.cuda.amp.GradScaler.*", category=FutureWarning)


def apply():
    patch_numpy()
    patch_torch_load()
    quiet_known_warnings()


apply()
