"""Property checks run by ``build_config`` before any data is read or any model is built.

Why: RecBole's ``Config`` keeps whatever a value evaluates to, so ``--id_dim=-1`` or
``--id_dim=abc`` only fails deep inside torch, ``--text_fields=title`` becomes the list of
its letters, ``--rq_codebook_size=1`` trains a model whose items all share one semantic ID,
and a property of another model is silently ignored. Each check here names the property
and what it accepts.
"""

import functools
import glob
import os
import re
from logging import getLogger

import yaml

from recbole_usr.model.item_representations import ITEM_REPRESENTATIONS

# Properties and what they accept; a property is checked only where it is set (not None).
POSITIVE_INTS = (
    "epochs", "train_batch_size", "eval_batch_size", "MAX_ITEM_LIST_LENGTH", "hidden_size", "n_layers",
    "n_heads", "inner_size", "semantic_dim", "rq_levels", "rq_pretrain_batch_size", "text_batch_size",
    "spm_vocab_size", "hash_buckets", "ngram_n", "train_length_buckets", "tokenizer_epochs",
    "tokenizer_batch_size", "tokenizer_kmeans_iters", "rq_kmeans_iters", "beam_size", "history_max_items", "n_user_tokens",
    "n_encoder_layers", "n_decoder_layers", "length_buckets", "lr_constant_steps",
)
NON_NEGATIVE_INTS = ("id_dim", "rq_kmeans_points_per_centroid", "rq_pretrain_epochs", "rq_dead_code_steps", "tokenizer_dead_code_steps", "stopping_step")
MIN_INTS = {"rq_codebook_size": 2}  # one codeword per level gives every item the same semantic ID
POSITIVE_FLOATS = ("learning_rate", "rq_pretrain_lr", "tokenizer_lr", "train_time_budget")
NON_NEGATIVE_FLOATS = ("rq_beta", "rq_loss_weight", "recon_loss_weight", "rq_rec_grad_scale")
UNIT_INTERVAL = ("hidden_dropout_prob", "attn_dropout_prob", "item_emb_dropout_prob", "rq_dropout", "cold_item_ratio")  # [0, 1)
BOOLS = (
    "use_semantic", "rq_use_ema", "rq_kmeans_init", "rq_restart_unused", "rq_end_to_end_restarts",
    "rq_unique_last_level", "train_whole_sequence",
    "attend_padding", "attention_output_dropout", "train_exclude_cold_items", "sampled_eval_from_full_sort",
    "strict_properties", "drop_malformed_rows", "use_user_token",
)
CHOICES = {
    "item_repr": tuple(ITEM_REPRESENTATIONS),
    "rq_train_mode": ("end_to_end", "two_stage"),
    "spm_model_type": ("bpe", "unigram"),
    "rq_cosine_codewords": ("raw", "unit"),
    "transformer_layout": ("post_ln", "pre_ln"),
    "position_index": ("start", "end"),
    "weight_init": ("normal", "xavier_normal"),
    "lr_schedule": ("inverse_sqrt",),
}
SINGLE_NAME_LISTS = ("text_fields",)  # --text_fields=title arrives as the string 'title'
NAME_LISTS = ("text_fields", "rq_distances", "tokenizer_schemes")  # --x=[a, b] arrives as the string '[a, b]'
BARE_NAME_LIST = re.compile(r"^\[([\w\s,.-]*)\]$")


def describe(value):
    return f"{value!r} ({type(value).__name__})"


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_errors(config):
    """One message per property whose value is outside what it accepts."""
    errors = []

    def check(keys, ok, accepted):
        for key in keys:
            value = config[key]
            if value is not None and not ok(value):
                errors.append(f"'{key}' must be {accepted}, got {describe(value)}")

    check(POSITIVE_INTS, lambda v: is_int(v) and v > 0, "an integer > 0")
    check(NON_NEGATIVE_INTS, lambda v: is_int(v) and v >= 0, "an integer >= 0")
    for key, low in MIN_INTS.items():
        check([key], lambda v, low=low: is_int(v) and v >= low, f"an integer >= {low}")
    check(POSITIVE_FLOATS, lambda v: is_number(v) and v > 0, "a number > 0")
    check(NON_NEGATIVE_FLOATS, lambda v: is_number(v) and v >= 0, "a number >= 0")
    check(UNIT_INTERVAL, lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    check(["rq_ema_decay"], lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
    check(["adam_betas"], lambda v: isinstance(v, (list, tuple)) and len(v) == 2
          and all(is_number(b) and 0 <= b < 1 for b in v), "two numbers in [0, 1), e.g. [0.9, 0.98]")
    check(BOOLS, lambda v: isinstance(v, bool), "True or False")
    check(["rq_rec_codeword_grad"], lambda v: isinstance(v, bool) or (
        isinstance(v, list) and v and all(isinstance(b, bool) for b in v)),
        "True, False or one of them per level, e.g. [True, True, False]")
    for key, accepted in CHOICES.items():
        check([key], lambda v, accepted=accepted: v in accepted, f"one of {list(accepted)}")
    check(["topk"], lambda v: (is_int(v) and v > 0) or (isinstance(v, list) and v and all(is_int(k) and k > 0 for k in v)),
          "a positive integer or a list of them")
    errors.extend(distance_errors(config))
    return errors


def distance_errors(config):
    """``rq_distances``: a scheme name or one distance per level (``rq_levels``)."""
    from recbole_usr.quantization import resolve_distances

    spec, levels = config["rq_distances"], config["rq_levels"]
    if spec is None or not is_int(levels) or levels < 1:
        return []
    try:
        resolve_distances(spec, levels)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return [
            f"'rq_distances' must be hybrid, cosine, euclidean, learned or a list of {levels} of "
            "cosine / euclidean / learned "
            f"(one per level, rq_levels={levels}), got {describe(spec)}: {error}"
        ]
    return []


def normalise_properties(config):
    """Values RecBole's parsing turns into something else than meant, put right."""
    for key in NAME_LISTS:
        match = BARE_NAME_LIST.match(config[key].strip()) if isinstance(config[key], str) else None
        if match:
            config[key] = [name.strip() for name in match.group(1).split(",") if name.strip()]
    for key in SINGLE_NAME_LISTS:
        if isinstance(config[key], str):
            config[key] = [config[key]]


def check_property_values(config):
    """Normalise, then raise ValueError listing every property outside its accepted range or type."""
    normalise_properties(config)
    errors = value_errors(config)
    if errors:
        raise ValueError("Invalid propert" + ("y: " if len(errors) == 1 else "ies: ") + "; ".join(errors) + ".")


def yaml_keys(paths):
    keys = set()
    for path in paths:
        with open(path) as f:
            content = yaml.safe_load(f)
        if isinstance(content, dict):
            keys.update(content)
    return keys


@functools.lru_cache(maxsize=None)
def model_property_owners(properties_dirs):
    """``{property: [models whose yaml sets it]}`` over every model yaml of RecBole and the plugin."""
    owners = {}
    for root in properties_dirs:
        for path in sorted(glob.glob(os.path.join(root, "model", "*.yaml"))):
            model = os.path.splitext(os.path.basename(path))[0]
            for key in yaml_keys([path]):
                owners.setdefault(key, []).append(model)
    return owners


@functools.lru_cache(maxsize=None)
def general_property_names(properties_dirs, extra_names=()):
    """Properties every model may read: overall, dataset, quick-start and tokenizer yamls."""
    paths = []
    for root in properties_dirs:
        paths += glob.glob(os.path.join(root, "*.yaml"))
        for folder in ("dataset", "quick_start_config"):
            paths += [p for p in glob.glob(os.path.join(root, folder, "*.yaml")) if "url" not in os.path.basename(p)]
    return yaml_keys(paths) | set(extra_names)


def check_unused_properties(config, user_keys, properties_dirs, extra_names=()):
    """Report properties the user set that only other models' yamls define (e.g.
    ``--embedding_size`` on UnifiedSASRec): an error under ``strict_properties``, else a warning."""
    model = config["model"]
    owners = model_property_owners(tuple(properties_dirs))
    general = general_property_names(tuple(properties_dirs), frozenset(extra_names))
    unused = {}
    for key in dict.fromkeys(user_keys):
        models = owners.get(key, [])
        if key in general or not models or model in models:
            continue
        unused[key] = models
    if not unused:
        return
    listed = "; ".join(f"'{key}' (a property of {', '.join(models[:4])}{', ...' if len(models) > 4 else ''})"
                       for key, models in unused.items())
    message = f"Propert{'y' if len(unused) == 1 else 'ies'} not used by {model}: {listed}."
    if config["strict_properties"]:
        raise ValueError(message + " Remove it, or pass --strict_properties=False to only warn.")
    getLogger().warning(message + " Ignored.")
