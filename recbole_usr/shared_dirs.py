"""RecBole's working directories (``log/``, ``saved/``) made safely by processes that share a
working directory: the ranks of one multi-process run, or runs started side by side
(``python -m benchmarks.recipes --parallel 2``, two shells in one checkout).

Why: RecBole 1.2.1's ``ensure_dir`` checks ``os.path.exists`` and then calls ``os.makedirs``;
a process that loses the race in between dies with ``FileExistsError`` before training starts
(seen here with two recipe runs started a second apart, and with two ranks). Inside
:func:`recbole_dirs_shared` the logger, the trainer and dataloader saving make their directories
with ``exist_ok``; RecBole's own function is restored when the context ends, so nothing changes
for a user's code outside a plugin run.
"""

import contextlib
import os
from unittest import mock


def ensure_dir_shared(dir_path):
    """RecBole's ``ensure_dir`` that does not fail when another process created the directory
    between the existence check and ``makedirs``."""
    os.makedirs(dir_path, exist_ok=True)


@contextlib.contextmanager
def recbole_dirs_shared():
    """Within the context RecBole's logger, trainer and dataloader saving use :func:`ensure_dir_shared`."""
    import recbole.data.utils as recbole_data_utils
    import recbole.trainer.trainer as recbole_trainer
    import recbole.utils.logger as recbole_logger

    with contextlib.ExitStack() as patches:
        for module in (recbole_trainer, recbole_logger, recbole_data_utils):
            patches.enter_context(mock.patch.object(module, "ensure_dir", ensure_dir_shared))
        yield
