"""Semantic-ID item representations for ranking: n-gram, SentencePiece and hashing.

Reference:
    Anima Singh et al. "Better Generalization with Semantic IDs: A Case Study in Ranking
    for Recommendations." arXiv:2306.08121, 2023.

Each class follows the item-representation contract of
:mod:`recbole_usr.model.item_representation` (``.dim``, ``forward() -> (table, losses)``,
``describe()``, ``epoch_statistics()``) and is chosen by ``item_repr``:

- ``ngram`` (``ngram_n`` = n): the item's semantic ID ``(c_0, ..., c_{L-1})`` (L levels,
  K codes per level) is cut into its ``L - n + 1`` windows of n consecutive codes; window
  ``l`` has its own block of ``K**n`` rows, and its row inside the block reads the window's
  codes as a base-K number::

      index(l) = l * K**n + sum_j c_{l+j} * K**(n-1-j)      j = 0 .. n-1

  unigram (n=1): ``l*K + c_l``, ``L*K`` rows; bigram (n=2): ``l*K*K + c_l*K + c_{l+1}``,
  ``(L-1)*K*K`` rows. The item vector is the sum of its windows' rows; there is no
  item-ID table, so items with the same semantic ID share one vector.
- ``spm``: each (level, code) becomes one unique character, an item's semantic ID one
  L-character string; a SentencePiece model trained on the catalogue's strings cuts each
  string into pieces (substrings), and the item vector is the sum of its pieces' rows.
- ``hash``: item IDs hashed into ``hash_buckets`` rows with the universal hash
  ``((a * id + b) mod p) mod buckets`` (p = 2^31 - 1, a and b drawn from ``hash_seed``):
  the baseline that shares rows at random instead of by content.

Semantic codes come from an :class:`~recbole_usr.quantization.RQTokenizer` over the items'
text embeddings, k-means initialised and pre-trained alone (the ``rq_*`` properties),
then frozen: the codes are computed once here and stored as a buffer (saved with the
model, so a checkpoint keeps the exact codes it was trained with). Row 0 (padding) of
every table returned by ``forward`` is zeros.
"""

import hashlib
import os
import tempfile
from logging import getLogger

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recbole_usr.cache_files import BadCacheError, atomic_output, discard_bad_cache
from recbole_usr.data.text_embedding import load_item_text_embeddings
from recbole_usr.model.item_representation import count_parameters
from recbole_usr.quantization import RQTokenizer, codebook_statistics, fit_tokenizer

SEMANTIC_ID_REPRS = ("ngram", "spm", "hash")
# First character of the (level, code) alphabet: CJK Unified Ideographs, a block that
# SentencePiece treats as ordinary characters of one script (no normalisation change).
CODE_CHAR_BASE = 0x4E00
CODE_CHAR_COUNT = 0x9FFF - 0x4E00 + 1
HASH_PRIME = 2**31 - 1


def config_value(config, key, default):
    value = config[key]
    return default if value is None else value


def padding_mask(n_items):
    """Float ``[n_items, 1]``: 0 for the padding row 0, 1 elsewhere."""
    mask = torch.ones(n_items, 1)
    mask[0] = 0.0
    return mask


_codes_memo = {}  # (text digest, tokenizer settings) -> (codes, K): one fit per process and setting


def tokenizer_settings(config):
    """Every property the tokenizer and its fit may read: ``rq_*``, ``semantic_dim``, ``seed``."""
    items = config.final_config_dict.items() if hasattr(config, "final_config_dict") else config.items()
    return repr(sorted((k, repr(v)) for k, v in items if k.startswith("rq_") or k in ("semantic_dim", "seed")))


def frozen_semantic_codes(config, dataset):
    """``(codes [item_num, L] long, K)``: a frozen RQ tokenizer's codes for every item.

    The tokenizer is k-means initialised and trained alone for ``rq_pretrain_epochs`` on
    the text embeddings of all items (text is available for items with no interactions,
    which is the premise of content-based cold start), then only its codes are kept.
    Row 0 (padding) is zeros and is masked by every representation.

    The codes are a function of the text, the ``rq_*`` settings and ``seed`` alone: the fit
    uses a private RNG stream and one CPU thread (two threads reorder float sums, and 30
    epochs turn that into different codes for a third of ml-100k's items). Representations
    built in one process with the same settings share one fit.
    """
    text = load_item_text_embeddings(config, dataset)
    key = (hashlib.sha1(text.numpy().tobytes()).hexdigest(), tokenizer_settings(config))
    if key in _codes_memo:
        codes, codebook_size = _codes_memo[key]
        return codes.clone(), codebook_size
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        # the recommender's own initialisation is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            tokenizer = RQTokenizer.from_config(config, in_dim=text.shape[1])
            fit_tokenizer(
                tokenizer,
                text[1:],
                epochs=config_value(config, "rq_pretrain_epochs", 0),
                batch_size=config_value(config, "rq_pretrain_batch_size", 1024),
                lr=config_value(config, "rq_pretrain_lr", 1e-3),
                show_progress=bool(config["show_progress"]),
                seed=config["seed"],
                kmeans_init=bool(config_value(config, "rq_kmeans_init", True)),
                desc="RQ tokenizer (frozen codes)",
            )
            codes = torch.zeros(text.shape[0], tokenizer.n_levels, dtype=torch.long)
            codes[1:] = tokenizer.encode(text[1:])
    finally:
        torch.set_num_threads(threads)
    _codes_memo[key] = (codes, tokenizer.codebook_size)
    return codes.clone(), tokenizer.codebook_size


def log_code_statistics(codes, codebook_size, logger=None):
    """Codebook health of the frozen codes (items 1..N), logged once; returned as a dict."""
    stats = codebook_statistics(codes[1:], codebook_size)
    (logger or getLogger()).info(
        f"Frozen semantic IDs: {stats['n_distinct']} distinct of {stats['n_items']} items, "
        f"unique coverage {stats['unique_coverage']:.3f}, largest collision {stats['max_collision']}, "
        f"per-level activation {[round(a, 3) for a in stats['activation']]}"
    )
    return stats


def ngram_indices(codes, codebook_size, n):
    """Row of each n-gram window: ``[N, L - n + 1]`` long (see the module docstring)."""
    codes = torch.as_tensor(codes, dtype=torch.long)
    n_levels = codes.shape[1]
    if not 1 <= n <= n_levels:
        raise ValueError(f"ngram_n must be between 1 and the number of levels ({n_levels}), got {n}.")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}).")
    block = codebook_size**n
    windows = []
    for start in range(n_levels - n + 1):
        index = torch.zeros(codes.shape[0], dtype=torch.long)
        for j in range(n):
            index = index * codebook_size + codes[:, start + j]
        windows.append(start * block + index)
    return torch.stack(windows, dim=1)


def ngram_table_rows(n_levels, codebook_size, n):
    return (n_levels - n + 1) * codebook_size**n


def init_table(weight, initializer_range):
    """SASRec's normal initialisation (every row is a real code/piece/bucket: no padding row)."""
    weight.data.normal_(mean=0.0, std=initializer_range)


class SummedRowsItemEmbedding(nn.Module):
    """Item vector = sum of rows ``index[item, :]`` of one table; ``-1`` entries are skipped.

    The shared body of the three representations: ``index`` [n_items, slots] is a buffer
    computed once, the table is the only trainable parameter.
    """

    table_name = "table"

    def __init__(self, index, n_rows, dim, initializer_range=0.02):
        super().__init__()
        self.dim = dim
        self.table = nn.Embedding(n_rows, dim)
        init_table(self.table.weight, initializer_range)
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() == 1:
            index = index[:, None]
        if index.numel() and int(index.max()) >= n_rows:
            raise ValueError(f"row index {int(index.max())} out of range for a table of {n_rows} rows.")
        self.register_buffer("row_index", index)
        self.register_buffer("item_mask", padding_mask(index.shape[0]), persistent=False)

    @property
    def n_items(self):
        return self.row_index.shape[0]

    def forward(self):
        used = (self.row_index >= 0).unsqueeze(-1).to(self.table.weight.dtype)
        rows = F.embedding(self.row_index.clamp(min=0), self.table.weight)  # [N, slots, dim]
        return (rows * used).sum(dim=1) * self.item_mask, {}

    def describe(self):
        size = count_parameters(self.table)
        return {self.table_name: size, "item_embedding": size, "id_only_64d_table": self.n_items * 64,
                "id_only_same_width_table": self.n_items * self.dim}

    def epoch_statistics(self):
        return {}  # codes, pieces and buckets are frozen: their statistics are logged once


class NGramItemEmbedding(SummedRowsItemEmbedding):
    """Sum of one embedding per window of ``n`` consecutive semantic codes (no ID table)."""

    def __init__(self, codes, codebook_size, dim, n=1, initializer_range=0.02):
        codes = torch.as_tensor(codes, dtype=torch.long)
        rows = ngram_table_rows(codes.shape[1], codebook_size, n)
        super().__init__(ngram_indices(codes, codebook_size, n), rows, dim, initializer_range)
        self.n = n
        self.table_name = {1: "unigram_table", 2: "bigram_table"}.get(n, f"{n}-gram_table")
        self.register_buffer("codes", codes)
        self.codebook_size = codebook_size

    @classmethod
    def from_config(cls, config, dataset):
        codes, codebook_size = frozen_semantic_codes(config, dataset)
        module = cls(codes, codebook_size, config_value(config, "hidden_size", 64),
                     int(config_value(config, "ngram_n", 1)), config_value(config, "initializer_range", 0.02))
        module.code_statistics = log_code_statistics(codes, codebook_size)
        return module


def code_alphabet_char(level, code, codebook_size):
    """The unique character standing for ``code`` at ``level``."""
    offset = level * codebook_size + code
    if offset >= CODE_CHAR_COUNT:
        raise ValueError(f"{offset + 1} (level, code) characters needed; the alphabet has {CODE_CHAR_COUNT}.")
    return chr(CODE_CHAR_BASE + offset)


def code_strings(codes, codebook_size):
    """One string per row of ``codes`` [N, L]: character ``(level, code)`` for each level."""
    codes = torch.as_tensor(codes, dtype=torch.long).tolist()
    return ["".join(code_alphabet_char(level, c, codebook_size) for level, c in enumerate(row)) for row in codes]


def train_sentencepiece(sentences, vocab_size, model_type="bpe", cache_dir=None):
    """A ``SentencePieceProcessor`` trained in-process on ``sentences`` (an iterable of str).

    Settings keep every piece a substring of its sentence: identity normalisation, no
    dummy-prefix, no whitespace handling, full character coverage (no ``<unk>`` for a
    code seen in training), no BOS/EOS. ``vocab_size`` is an upper bound
    (``hard_vocab_limit: false``): a small catalogue may support fewer pieces. The model
    file is written to ``cache_dir`` (a temporary directory when None) under a name
    hashing the sentences and settings, atomically, and reused when already there and
    readable; an unusable file is reported and retrained.
    """
    import sentencepiece as spm

    sentences = list(sentences)
    settings = dict(
        vocab_size=int(vocab_size),
        model_type=model_type,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_by_unicode_script=False,
        split_by_whitespace=False,
        max_sentencepiece_length=max((len(s) for s in sentences), default=1),
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    n_chars = len(set("".join(sentences)))
    if settings["vocab_size"] <= n_chars:
        getLogger().warning(
            f"spm_vocab_size={vocab_size} is below the {n_chars} distinct (level, code) characters "
            f"+ <unk>: raised to {n_chars + 1}."
        )
        settings["vocab_size"] = n_chars + 1
    digest = hashlib.sha1(repr((sentences, sorted(settings.items()))).encode()).hexdigest()[:12]
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "recbole_usr_spm")
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"semantic-ids-{model_type}-{digest}.model")
    if os.path.exists(path):
        try:
            return load_sentencepiece(path, sentences)
        except BadCacheError as error:
            discard_bad_cache(path, error, "SentencePiece model")
    with atomic_output(path) as temporary:  # the trainer writes <prefix>.model and <prefix>.vocab
        prefix = temporary[: -len(".tmp")]
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_prefix=prefix, **settings)
            os.replace(prefix + ".model", temporary)
        finally:
            for leftover in (prefix + ".model", prefix + ".vocab"):
                if os.path.exists(leftover):
                    os.remove(leftover)
    return load_sentencepiece(path, sentences)


def load_sentencepiece(path, sentences):
    """The SentencePiece model at ``path``; BadCacheError unless it reads and covers every
    character of ``sentences`` (a model for other items would map them to ``<unk>``)."""
    import sentencepiece as spm

    try:
        processor = spm.SentencePieceProcessor(model_file=path)
    except Exception as error:  # truncated, empty or foreign file
        raise BadCacheError(f"unreadable ({type(error).__name__}: {error})") from error
    unknown = sorted({char for char in "".join(sentences) if processor.piece_to_id(char) == processor.unk_id()})
    if unknown:
        raise BadCacheError(f"built for other semantic IDs ({len(unknown)} codes of these items are not in it)")
    return processor


def piece_index(processor, sentences, slots):
    """``[N, slots]`` piece ids per sentence, ``-1`` padded; ``slots`` bounds the piece count."""
    index = torch.full((len(sentences), slots), -1, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        pieces = processor.encode(sentence)
        index[row, : len(pieces)] = torch.tensor(pieces, dtype=torch.long)
    return index


class SPMItemEmbedding(SummedRowsItemEmbedding):
    """Sum of the embeddings of the SentencePiece pieces of the item's semantic-ID string."""

    table_name = "spm_piece_table"

    def __init__(self, codes, codebook_size, dim, vocab_size, model_type="bpe", cache_dir=None,
                 initializer_range=0.02):
        codes = torch.as_tensor(codes, dtype=torch.long)
        strings = code_strings(codes[1:], codebook_size)  # row 0 (padding) is not an item
        processor = train_sentencepiece(strings, vocab_size, model_type, cache_dir)
        index = torch.full((codes.shape[0], codes.shape[1]), -1, dtype=torch.long)
        index[1:] = piece_index(processor, strings, codes.shape[1])  # a piece covers >= 1 code
        super().__init__(index, processor.get_piece_size(), dim, initializer_range)
        self.register_buffer("codes", codes)
        self.codebook_size = codebook_size
        self.processor = processor

    @classmethod
    def from_config(cls, config, dataset):
        codes, codebook_size = frozen_semantic_codes(config, dataset)
        module = cls(
            codes,
            codebook_size,
            config_value(config, "hidden_size", 64),
            config_value(config, "spm_vocab_size", 2048),
            config_value(config, "spm_model_type", "bpe"),
            config["spm_cache_dir"],
            config_value(config, "initializer_range", 0.02),
        )
        module.code_statistics = log_code_statistics(codes, codebook_size)
        getLogger().info(
            f"SentencePiece ({module.processor.get_piece_size()} pieces): "
            f"{module.describe()['mean_pieces_per_item']:.2f} pieces per item on average"
        )
        return module

    def describe(self):
        counts = super().describe()
        counts["spm_pieces"] = self.table.num_embeddings
        counts["mean_pieces_per_item"] = float((self.row_index[1:] >= 0).sum(1).float().mean())
        return counts


def hash_item_ids(item_ids, buckets, seed=0):
    """Bucket of each item id: ``((a * id + b) mod p) mod buckets``, a, b drawn from ``seed``."""
    rng = np.random.RandomState(seed)
    a = int(rng.randint(1, HASH_PRIME))
    b = int(rng.randint(0, HASH_PRIME))
    ids = torch.as_tensor(item_ids, dtype=torch.long)
    return ((a * ids + b) % HASH_PRIME) % int(buckets)  # a, ids < 2^31: no int64 overflow


class HashItemEmbedding(SummedRowsItemEmbedding):
    """Random sharing: item ``i`` reads row ``hash(i)`` of a ``buckets``-row table."""

    table_name = "hash_table"

    def __init__(self, n_items, dim, buckets, seed=0, initializer_range=0.02):
        if buckets < 1:
            raise ValueError(f"hash_buckets must be >= 1, got {buckets}.")
        super().__init__(hash_item_ids(torch.arange(n_items), buckets, seed), buckets, dim, initializer_range)
        self.buckets = buckets

    @classmethod
    def from_config(cls, config, dataset):
        seed = config["hash_seed"]
        return cls(
            dataset.item_num,
            config_value(config, "hidden_size", 64),
            int(config_value(config, "hash_buckets", 2048)),
            config["seed"] if seed is None else seed,
            config_value(config, "initializer_range", 0.02),
        )

    def describe(self):
        counts = super().describe()
        counts["distinct_buckets_used"] = int(torch.unique(self.row_index[1:]).numel())
        return counts


def build_semantic_id_representation(config, dataset):
    """The ``ngram`` / ``spm`` / ``hash`` representation named by ``item_repr``."""
    name = config["item_repr"]
    classes = {"ngram": NGramItemEmbedding, "spm": SPMItemEmbedding, "hash": HashItemEmbedding}
    if name not in classes:
        raise ValueError(f"'{name}' is not a semantic-ID representation ({', '.join(classes)}).")
    return classes[name].from_config(config, dataset)
