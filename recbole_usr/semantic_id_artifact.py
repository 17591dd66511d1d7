"""Semantic IDs as one artifact: fitted once, cached on disk, saved in checkpoints.

Why: every consumer (UnifiedSASRec's unified / ngram / spm representations, TIGER,
``python -m recbole_usr.tokenize``) must see the same codes for the same properties, a
reloaded checkpoint must not refit its tokenizer, and a checkpoint whose item text has
changed since training must be refused rather than scored with codes for other text.

The artifact holds the fitted RQ tokenizer's weights (encoder, codebooks, decoder), every
item's codes ``[n_items, L]`` (row 0 = padding, zeros), the digest and a small sketch of the
text-embedding matrix the codes were computed from (the sketch lets a checkpoint move to a
machine whose encoder gives the same text other float bits), and the items the tokenizer was
fitted on (under a cold-item split: the warm items only; held-out items get their codes from
the frozen tokenizer, as a new item would in production).

The fit is a function of the text, the fit items, the ``rq_*`` properties,
``semantic_dim`` and ``seed`` alone: parameters are initialised under a forked global RNG,
shuffling, k-means and restarts draw from a private ``torch.Generator``, and it runs on one
torch thread (restored afterwards), because two threads reorder float sums and a few
epochs turn that into different codes. It is cached in ``semantic_id_cache_dir`` (default:
the text-embedding cache folder) under a name hashing all of the above, written
atomically and checked on read (:mod:`recbole_usr.cache_files`).

Callers that build a model (``quick_start.run``, ``load_data_and_model``) attach the
artifact to the dataset first (:func:`prepare_semantic_ids`, or from the checkpoint with
:func:`attach_checkpoint_semantic_ids`); model constructors only read it
(:func:`semantic_ids_for`), fitting it themselves only when built by hand.
"""

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from logging import getLogger

import torch

from recbole_usr.cache_files import BadCacheError, atomic_output, discard_bad_cache
from recbole_usr.config_values import config_value
from recbole_usr.data.text_embedding import load_item_text_embeddings
from recbole_usr.quantization import RQTokenizer, codebook_statistics, fit_tokenizer

ARTIFACT_FORMAT = 1
DATASET_ATTRIBUTE = "semantic_id_artifact"


@dataclass
class SemanticIDArtifact:
    codes: torch.Tensor  # [n_items, L] long, row 0 zeros
    tokenizer_state: dict  # RQTokenizer.state_dict() after the fit
    codebook_size: int
    text_digest: str  # sha1 of the text-embedding matrix [n_items, d] the codes come from
    fit_items: torch.Tensor  # sorted internal ids the tokenizer was fitted on
    settings: dict  # rq_*, semantic_dim, seed
    history: list  # the fit's mean losses per epoch
    text_sketch: torch.Tensor = None  # text_sketch(text) [n_items, SKETCH_DIRECTIONS]; None in older files

    @property
    def stats(self):
        """Codebook health of the codes as fitted (items 1..N), restarts excluded."""
        return codebook_statistics(self.codes[1:], self.codebook_size)

    def tokenizer(self, in_dim):
        """A copy of the fitted tokenizer. Built under a forked RNG (its random initialisation
        is overwritten at once), so a model initialises the same from a cache hit or a fit."""
        with torch.random.fork_rng(devices=[]):
            tokenizer = RQTokenizer.from_config(self.settings, in_dim=in_dim)
        tokenizer.load_state_dict(self.tokenizer_state)
        return tokenizer

    def to_dict(self):
        """Plain tensors and strings: what checkpoints and the disk cache store."""
        return {"format": ARTIFACT_FORMAT, "codes": self.codes, "tokenizer_state": self.tokenizer_state,
                "codebook_size": self.codebook_size, "text_digest": self.text_digest,
                "fit_items": self.fit_items, "settings": json.dumps(self.settings, sort_keys=True),
                "history": json.dumps(self.history),
                **({} if self.text_sketch is None else {"text_sketch": self.text_sketch})}

    @classmethod
    def from_dict(cls, stored):
        if stored.get("format") != ARTIFACT_FORMAT:
            raise BadCacheError(f"format {stored.get('format')!r}, expected {ARTIFACT_FORMAT}")
        return cls(stored["codes"], stored["tokenizer_state"], int(stored["codebook_size"]),
                   stored["text_digest"], stored["fit_items"], json.loads(stored["settings"]),
                   json.loads(stored["history"]), stored.get("text_sketch"))


def tensor_digest(tensor):
    return hashlib.sha1(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


SKETCH_DIRECTIONS = 8
SKETCH_TOLERANCE = 1e-3  # encoders on other hardware differ by ~1e-6; another text moves a row by ~1e-2 or more


def text_sketch(text):
    """Every item's unit-length text embedding projected on fixed random unit directions,
    ``[n_items, SKETCH_DIRECTIONS]``: the same text encoded on another machine lands within
    float rounding of it, while an item whose text changed moves by far more than
    ``SKETCH_TOLERANCE`` on some direction."""
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(text.shape[1], SKETCH_DIRECTIONS, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=0)
    rows = torch.nn.functional.normalize(text.detach().cpu().double(), dim=1)
    return (rows @ directions).float()


def text_fingerprint(text):
    """What :func:`check_same_text` compares: the exact digest and the sketch."""
    return {"text_digest": tensor_digest(text), "text_sketch": text_sketch(text)}


def tokenizer_settings(config, **overrides):
    """Every property the tokenizer and its fit read: ``rq_*``, ``semantic_dim``, ``seed``."""
    items = config.final_config_dict.items() if hasattr(config, "final_config_dict") else config.items()
    settings = {key: value for key, value in items if key.startswith("rq_") or key in ("semantic_dim", "seed")}
    settings.update(overrides)
    return json.loads(json.dumps(settings, sort_keys=True, default=str))  # plain, comparable values


@contextlib.contextmanager
def single_thread():
    """One torch thread inside, the caller's count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_mask(n_rows, fit_items):
    """Bool mask [n_rows - 1] (padding row dropped) of the items the tokenizer was fitted on:
    with ``rq_unique_last_level`` they are matched to last codewords before held-out items."""
    mask = torch.zeros(n_rows - 1, dtype=torch.bool)
    mask[torch.as_tensor(fit_items, dtype=torch.long) - 1] = True
    return mask


def fit_semantic_ids(settings, text, fit_items, show_progress=False, desc="RQ tokenizer"):
    """Fit the RQ tokenizer on ``text[fit_items]`` and encode every row of ``text``.

    ``text`` [n_items, d] (row 0 padding), ``fit_items`` internal ids. Deterministic for
    given inputs, whatever the caller's RNG state and torch thread count.
    """
    fit_items = torch.as_tensor(fit_items, dtype=torch.long).sort().values
    seed = int(config_value(settings, "seed", 0))
    with single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # parameter initialisation; the caller's stream is restored after
        generator = torch.Generator().manual_seed(seed)
        tokenizer = RQTokenizer.from_config(settings, in_dim=text.shape[1])
        history = fit_tokenizer(
            tokenizer,
            text[fit_items],
            epochs=int(config_value(settings, "rq_pretrain_epochs", 0)),
            batch_size=int(config_value(settings, "rq_pretrain_batch_size", 1024)),
            lr=float(config_value(settings, "rq_pretrain_lr", 1e-3)),
            show_progress=show_progress,
            generator=generator,
            kmeans_init=bool(config_value(settings, "rq_kmeans_init", True)),
            kmeans_iters=int(config_value(settings, "rq_kmeans_iters", 20)),
            kmeans_points_per_centroid=int(config_value(settings, "rq_kmeans_points_per_centroid", 256)),
            restart_unused=bool(config_value(settings, "rq_restart_unused", True)),
            desc=desc,
        )
        codes = torch.zeros(text.shape[0], tokenizer.n_levels, dtype=torch.long)
        codes[1:] = tokenizer.encode(text[1:], first=fit_mask(text.shape[0], fit_items))
    state = {key: value.detach().clone() for key, value in tokenizer.state_dict().items()}
    return SemanticIDArtifact(codes, state, tokenizer.codebook_size, tensor_digest(text), fit_items, settings,
                              history, text_sketch(text))


def cache_path(cache_dir, name, settings, text_digest, fit_items):
    key = json.dumps([ARTIFACT_FORMAT, settings, text_digest, tensor_digest(fit_items)], sort_keys=True)
    return os.path.join(cache_dir, f"{name}.semantic-ids.{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt")


def read_artifact(path, settings, text, fit_items):
    """The cached artifact at ``path``; BadCacheError unless it is for exactly these inputs."""
    try:
        artifact = SemanticIDArtifact.from_dict(torch.load(path, weights_only=True))
    except BadCacheError:
        raise
    except Exception as error:  # truncated, empty, foreign file
        raise BadCacheError(f"unreadable ({type(error).__name__}: {error})") from error
    if artifact.settings != settings or artifact.text_digest != tensor_digest(text):
        raise BadCacheError("built for other settings or other item text")
    if not torch.equal(artifact.fit_items, fit_items):
        raise BadCacheError("fitted on another set of items")
    if artifact.text_sketch is None:  # written before sketches: its digest is this text's, so sketch it now
        artifact.text_sketch = text_sketch(text)
    codes = artifact.codes
    if codes.dtype != torch.long or codes.shape[0] != text.shape[0] or (
            codes.numel() and (codes.min() < 0 or codes.max() >= artifact.codebook_size)):
        raise BadCacheError(f"its codes {tuple(codes.shape)} do not fit {text.shape[0]} items")
    try:
        artifact.tokenizer(text.shape[1])
    except Exception as error:
        raise BadCacheError(f"its tokenizer weights do not load ({error})") from error
    return artifact


def load_or_fit_semantic_ids(settings, text, fit_items, cache_dir=None, name="items", show_progress=False,
                             desc="RQ tokenizer"):
    """The artifact from ``cache_dir`` when there and valid, else fitted now and cached."""
    fit_items = torch.as_tensor(fit_items, dtype=torch.long).sort().values
    logger = getLogger()
    path = cache_path(cache_dir, name, settings, tensor_digest(text), fit_items) if cache_dir else None
    if path and os.path.exists(path):
        try:
            artifact = read_artifact(path, settings, text, fit_items)
            logger.info(f"Semantic IDs: cache hit {path}")
            return artifact
        except BadCacheError as error:
            discard_bad_cache(path, error, "semantic-ID cache")
    logger.info(f"Semantic IDs: fitting the RQ tokenizer on {len(fit_items)} of {text.shape[0] - 1} items")
    artifact = fit_semantic_ids(settings, text, fit_items, show_progress, desc)
    if path:
        try:
            with atomic_output(path) as temporary:
                torch.save(artifact.to_dict(), temporary)
        except OSError as error:
            logger.warning(f"Semantic IDs: could not write the cache {path} ({error}); they are fitted again next time.")
    return artifact


def warm_items(dataset):
    """Internal ids the tokenizer may see: every item but padding and the held-out cold items."""
    fit = torch.ones(dataset.item_num, dtype=torch.bool)
    fit[0] = False
    cold = getattr(dataset, "cold_items", None)
    if cold is not None and len(cold):
        fit[torch.as_tensor(cold, dtype=torch.long)] = False
    return fit.nonzero().squeeze(1)


def cache_dir_of(config):
    return config_value(config, "semantic_id_cache_dir", None) or config_value(
        config, "text_cache_dir", os.path.join("dataset", config["dataset"]))


def prepare_semantic_ids(config, dataset):
    """Load or fit the dataset's artifact and attach it to ``dataset``; returns it."""
    text = load_item_text_embeddings(config, dataset)
    artifact = load_or_fit_semantic_ids(tokenizer_settings(config), text, warm_items(dataset), cache_dir_of(config),
                                        config["dataset"], bool(config["show_progress"]))
    setattr(dataset, DATASET_ATTRIBUTE, artifact)
    return artifact


def semantic_ids_for(config, dataset):
    """What a model constructor reads: the attached artifact, fitted now only when none is."""
    artifact = getattr(dataset, DATASET_ATTRIBUTE, None)
    return artifact if artifact is not None else prepare_semantic_ids(config, dataset)


def check_same_text(dataset_name, stored, current, item_tokens=None):
    """Refuse a checkpoint whose semantic IDs were computed from other item text.

    ``stored`` and ``current`` hold ``text_digest`` and (optionally) ``text_sketch``. Equal
    digests pass; otherwise equal sketches within ``SKETCH_TOLERANCE`` pass too (the same
    text, encoded on other hardware), so a checkpoint trained on a GPU loads on a CPU. The
    error names the changed items by ``item_tokens(internal ids)`` where given (the raw ids
    a user knows), else by internal id."""
    stored_digest, current_digest = stored["text_digest"], current["text_digest"]
    if stored_digest == current_digest:
        return
    stored_sketch, current_sketch = stored.get("text_sketch"), current.get("text_sketch")
    why = "the checkpoint predates text sketches, so only bit-identical embeddings pass"
    if stored_sketch is not None and current_sketch is not None:
        if stored_sketch.shape != current_sketch.shape:
            why = f"{stored_sketch.shape[0] - 1} items then, {current_sketch.shape[0] - 1} now"
        else:
            gaps = (stored_sketch - current_sketch).abs().amax(dim=1)
            if gaps.max().item() <= SKETCH_TOLERANCE:
                getLogger().info(f"Item text of '{dataset_name}': embeddings differ from the checkpoint's in "
                                 f"float rounding only (largest sketch gap {gaps.max().item():.1e}); accepted.")
                return
            changed = (gaps > SKETCH_TOLERANCE).nonzero().squeeze(1)
            shown = [str(token) for token in item_tokens(changed[:5].numpy())] if item_tokens else \
                [f"internal id {index}" for index in changed[:5].tolist()]
            why = f"{len(changed)} item(s) encode differently: {', '.join(shown)}{' ...' if len(changed) > 5 else ''}"
    raise ValueError(
        f"The item text of '{dataset_name}' no longer matches this checkpoint ({why}): its semantic IDs were "
        f"computed from text embeddings {stored_digest[:12]}, the current .item file, text_fields "
        f"and text_encoder give {current_digest[:12]}. Restore the item text the model was trained on, "
        "or train again."
    )


def attach_checkpoint_semantic_ids(config, dataset, stored):
    """Attach a checkpoint's artifact to ``dataset`` (no fit), after checking that the item
    text still gives the embeddings the codes were computed from."""
    artifact = SemanticIDArtifact.from_dict(stored)
    check_same_text(config["dataset"], stored, text_fingerprint(load_item_text_embeddings(config, dataset)),
                    item_tokens=lambda ids: dataset.id2token(dataset.iid_field, ids))
    setattr(dataset, DATASET_ATTRIBUTE, artifact)
    return artifact


class CarriesSemanticIDs:
    """Mixin for a RecBole model built from the artifact: RecBole's checkpoints keep it in
    ``other_parameter`` (so a reload attaches it instead of refitting), and loading a
    checkpoint into a model built from other item text fails, whichever loader is used."""

    def keep_semantic_ids(self, config, dataset):
        artifact = getattr(dataset, DATASET_ATTRIBUTE, None)
        if artifact is not None:
            self.other_parameter_name = ["semantic_ids"]
            self.semantic_ids = artifact.to_dict()
            self.semantic_ids_dataset = config["dataset"]

    def load_other_parameter(self, para):
        stored = (para or {}).get("semantic_ids")
        built_with = getattr(self, "semantic_ids", None)
        if stored is not None and built_with is not None:
            check_same_text(self.semantic_ids_dataset, stored, built_with)
        super().load_other_parameter(para)
