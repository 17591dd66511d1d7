"""``item_repr: spm``: the sum of the embeddings of the SentencePiece pieces of an item's
semantic-ID string (arXiv 2306.08121).

Each (level, code) becomes one unique character, an item's semantic ID one L-character
string; a SentencePiece model trained on the strings of the items the tokenizer was fitted
on (the warm items under a cold-item split) cuts each string into pieces (substrings).
Held-out items are cut by that frozen model, as a new item would be in production: a code
no warm item has becomes ``<unk>``.
"""

import hashlib
import os
import tempfile
from logging import getLogger

import torch

from recbole_usr.cache_files import BadCacheError, atomic_output, discard_bad_cache
from recbole_usr.config_values import config_value
from recbole_usr.model.item_representations.frozen_codes import frozen_codes
from recbole_usr.model.item_representations.summed_rows import SummedRowsItemEmbedding
from recbole_usr.semantic_id_artifact import semantic_ids_for

# First character of the (level, code) alphabet: CJK Unified Ideographs, a block that
# SentencePiece treats as ordinary characters of one script (no normalisation change).
CODE_CHAR_BASE = 0x4E00
CODE_CHAR_COUNT = 0x9FFF - 0x4E00 + 1


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
    uses_semantic_ids = True
    table_name = "spm_piece_table"

    def __init__(self, codes, codebook_size, dim, vocab_size, model_type="bpe", cache_dir=None,
                 initializer_range=0.02, fit_items=None):
        """``fit_items``: internal ids whose strings train SentencePiece (default: every item)."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        strings = code_strings(codes[1:], codebook_size)  # row 0 (padding) is not an item
        fit_items = torch.arange(1, codes.shape[0]) if fit_items is None else torch.as_tensor(fit_items)
        processor = train_sentencepiece([strings[i - 1] for i in fit_items.tolist()], vocab_size, model_type,
                                        cache_dir)
        index = torch.full((codes.shape[0], codes.shape[1]), -1, dtype=torch.long)
        index[1:] = piece_index(processor, strings, codes.shape[1])  # a piece covers >= 1 code
        super().__init__(index, processor.get_piece_size(), dim, initializer_range)
        self.register_buffer("codes", codes)
        self.codebook_size = codebook_size
        self.processor = processor

    @classmethod
    def from_config(cls, config, dataset):
        codes, codebook_size, stats = frozen_codes(config, dataset)
        module = cls(
            codes,
            codebook_size,
            config_value(config, "hidden_size", 64),
            config_value(config, "spm_vocab_size", 2048),
            config_value(config, "spm_model_type", "bpe"),
            config_value(config, "spm_cache_dir", None),
            config_value(config, "initializer_range", 0.02),
            fit_items=semantic_ids_for(config, dataset).fit_items,
        )
        module.code_statistics = stats
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
