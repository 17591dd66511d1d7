"""``python -m recbole_usr.recommend --model_file=saved/X.pth --topk=10 --output=recs.csv``

Recommendations out of a trained checkpoint (any sequential model ``run_recbole_usr`` wrote:
UnifiedSASRec, TIGER, RecBole's SASRec, ...): for each user, the top-k original item tokens
with their scores (and titles when the dataset's ``.item`` file has a ``title`` column),
one CSV row per (user, rank).

The input is everything known about the user, train, valid and test interactions alike:
the recommendation is the item after the last one the dataset holds (evaluation instead
predicts held-out items from shorter histories). Histories longer than
``MAX_ITEM_LIST_LENGTH`` keep their most recent items, as in training.
``--filter_seen_items=True`` drops the user's known items from the ranking (the
``filter_seen_items`` evaluation protocol); the default keeps them, as RecBole ranks.

``--export_items=items.parquet|csv`` writes every item's token, semantic ID (UnifiedSASRec's
tokenizer codes or TIGER's, when the model has one: ``code_0..``) and vector (the model's
item table row: ``v_0..``), e.g. to build an ANN index.
"""

import argparse
import csv
import os
import sys
from logging import getLogger

import numpy as np
import torch

from recbole_usr.cache_files import atomic_output

USER_COLUMNS = ("user_id", "rank", "item_id", "score")


def str2bool(value):
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{value}'")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", required=True, help="checkpoint written by run_recbole_usr (saved/*.pth)")
    parser.add_argument("--topk", type=int, default=10, help="recommendations per user")
    parser.add_argument("--user_ids", default=None, help="comma-separated user tokens (default: every user)")
    parser.add_argument("--output", default=None, help="CSV of recommendations: user_id, rank, item_id, score[, title]")
    parser.add_argument("--filter_seen_items", type=str2bool, default=False,
                        help="True: never recommend an item of the user's history (default False, as RecBole)")
    parser.add_argument("--export_items", default=None, help="items.parquet or items.csv: token, semantic ID, vector")
    parser.add_argument("--batch_size", type=int, default=None, help="users per batch (default: eval_batch_size)")
    args = parser.parse_args(argv)
    if not args.output and not args.export_items:
        parser.error("nothing to write: give --output and/or --export_items")
    if args.topk < 1:
        parser.error(f"--topk must be a positive integer, got {args.topk}")
    if args.export_items:
        check_export_format(args.export_items)
    return args


def check_export_format(path):
    """Fail before loading anything when the export cannot be written in the format asked."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".parquet", ".csv"):
        raise ValueError(f"--export_items={path}: use a .parquet or .csv file name.")
    if extension == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                f"--export_items={path} needs pyarrow for parquet (pip install pyarrow); "
                f"or write CSV: --export_items={os.path.splitext(path)[0]}.csv"
            ) from None


def latest_histories(dataset):
    """``(users [U], item_seq [U, max_len], item_seq_len [U])``: each user's most recent items,
    oldest first, over every interaction the dataset holds.

    RecBole keeps a sequential dataset as one row per prefix (``item_id_list`` -> target);
    a user's latest row (latest target time, then longest list) plus its target is the
    whole known sequence, cut to the last ``MAX_ITEM_LIST_LENGTH`` items. Users with fewer
    than two interactions have no row (RecBole makes none for them).
    """
    feat = dataset.inter_feat
    list_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
    length_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
    users = feat[dataset.uid_field].numpy()
    lengths = feat[length_field].numpy()
    order = np.lexsort((lengths, feat[dataset.time_field].numpy(), users))  # stable: ties keep the held order
    sorted_users = users[order]
    last = order[np.r_[sorted_users[1:] != sorted_users[:-1], True]]
    prefixes, prefix_len = feat[list_field][last], torch.as_tensor(lengths[last])
    max_len = prefixes.shape[1]
    full = torch.cat([prefixes, torch.zeros_like(prefixes[:, :1])], dim=1)
    full[torch.arange(len(last)), prefix_len] = feat[dataset.iid_field][last]
    full_len = prefix_len + 1
    # keep the last max_len items of each row, left-aligned
    start = (full_len - max_len).clamp(min=0)
    index = (start.unsqueeze(1) + torch.arange(max_len)).clamp(max=max_len)
    item_seq = full.gather(1, index)
    item_seq_len = full_len - start
    item_seq[torch.arange(max_len).unsqueeze(0) >= item_seq_len.unsqueeze(1)] = 0
    return torch.as_tensor(users[last]), item_seq, item_seq_len


def history_interaction(model, users, item_seq, item_seq_len):
    """The model's input for these users (RecBole's field names, on the model's device)."""
    from recbole.data.interaction import Interaction

    return Interaction({
        model.USER_ID: users, model.ITEM_SEQ: item_seq, model.ITEM_SEQ_LEN: item_seq_len,
    }).to(model.device)


def select_users(dataset, users, user_tokens):
    """Row indices of ``users`` for the requested raw tokens (all rows when none requested)."""
    if user_tokens is None:
        missing = dataset.user_num - 1 - len(users)
        if missing:
            getLogger().info(f"{missing} users have fewer than two interactions: no sequence, no recommendations.")
        return np.arange(len(users))
    token2id = dataset.field2token_id[dataset.uid_field]
    unknown = [token for token in user_tokens if token not in token2id]
    if unknown:
        raise ValueError(f"Unknown user id(s) {', '.join(unknown)}: not users of dataset '{dataset.dataset_name}'.")
    row_of = {int(user): row for row, user in enumerate(users.tolist())}
    no_history = [token for token in user_tokens if token2id[token] not in row_of]
    if no_history:
        raise ValueError(
            f"User id(s) {', '.join(no_history)} have fewer than two interactions in dataset "
            f"'{dataset.dataset_name}': RecBole holds no sequence for them, so there is no history to recommend from."
        )
    return np.array([row_of[token2id[token]] for token in user_tokens], dtype=np.int64)


def item_titles(config, dataset):
    """``{item token: title}`` when the ``.item`` file has a ``title`` column, else None."""
    import html

    from recbole_usr.data.item_text import read_item_table

    table = read_item_table(config["data_path"], config["dataset"])
    if table is None or "title" not in table.columns:
        return None
    known = dataset.field2token_id[dataset.iid_field]
    return {token: html.unescape(title) for token, title in zip(table[dataset.iid_field], table["title"])
            if token in known}


def prepare_model_for_topk(model, needed):
    """TIGER generates ``beam_size`` items only: widen its beam to the ``needed`` candidates."""
    beam_size = getattr(model, "beam_size", None)
    if beam_size is not None and beam_size < needed:
        getLogger().info(f"beam_size {beam_size} -> {needed} for these recommendations")
        model.beam_size = needed


@torch.no_grad()
def recommend(model, dataset, topk, user_tokens=None, filter_seen_items=False, batch_size=256, show_progress=True):
    """``(user token, rank, item token, score)`` rows, the best first per user.

    Only real catalogue items are ranked (never padding); an item scored ``-inf`` (e.g.
    outside TIGER's beam, or seen when ``filter_seen_items``) is never recommended, so a
    user gets fewer than ``topk`` only when fewer items are left.
    """
    from tqdm import tqdm

    from recbole_usr.evaluation.seen_items import SeenItemMask

    if topk > dataset.item_num - 1:
        raise ValueError(f"--topk={topk} exceeds the catalogue of {dataset.item_num - 1} items.")
    model.eval()
    users, item_seq, item_seq_len = latest_histories(dataset)
    rows = select_users(dataset, users, user_tokens)
    mask = SeenItemMask(dataset, model.device) if filter_seen_items else None  # every known interaction
    most_known = int(torch.diff(mask.indptr).max()) if mask is not None else 0
    prepare_model_for_topk(model, min(topk + most_known, dataset.item_num - 1))
    user_tokens_of = dataset.field2id_token[dataset.uid_field]
    item_tokens_of = dataset.field2id_token[dataset.iid_field]
    results = []
    for start in tqdm(range(0, len(rows), batch_size), desc="recommend", unit="batch", disable=not show_progress):
        batch = torch.as_tensor(rows[start:start + batch_size])
        interaction = history_interaction(model, users[batch], item_seq[batch], item_seq_len[batch])
        scores = model.full_sort_predict(interaction).view(len(batch), -1)
        scores[:, 0] = -np.inf  # padding
        if mask is not None:
            scores = mask.apply(interaction, scores)
        values, items = torch.topk(scores, topk, dim=1)
        for user, user_values, user_items in zip(users[batch].tolist(), values.tolist(), items.tolist()):
            ranked = [(item, value) for item, value in zip(user_items, user_values) if value != -np.inf]
            results.extend((user_tokens_of[user], rank, item_tokens_of[item], value)
                           for rank, (item, value) in enumerate(ranked, start=1))
    return results


def write_recommendations(path, rows, titles=None):
    """CSV with a header; a ``title`` column when ``titles`` (``{item token: title}``) is given."""
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(USER_COLUMNS + (("title",) if titles is not None else ()))
        for row in rows:
            writer.writerow(row + ((titles.get(row[2], ""),) if titles is not None else ()))


def item_semantic_ids(model):
    """``[n_items, L]`` codes (row 0 = padding) when the model has semantic IDs, else None:
    TIGER's frozen IDs, UnifiedSASRec's tokenizer codes or its frozen ngram / spm codes."""
    codes = getattr(model, "item_codes", None)  # TIGER
    if isinstance(codes, torch.Tensor):
        return codes
    item_repr = getattr(model, "item_repr", None)
    if getattr(item_repr, "tokenizer", None) is not None:  # unified: the codes the item table uses now
        codes = item_repr.item_codes()
        return torch.cat([codes.new_zeros(1, codes.shape[1]), codes])
    codes = getattr(item_repr, "codes", None)
    return codes if isinstance(codes, torch.Tensor) else None


def item_vectors(model):
    """``[n_items, dim]``: the table the model scores items with (row 0 = padding), else None
    (TIGER generates IDs and has no item table)."""
    if hasattr(model, "item_table"):
        return model.item_table()[0]
    table = getattr(model, "item_embedding", None)
    return table.weight if isinstance(table, torch.nn.Embedding) else None


@torch.no_grad()
def export_items(path, model, dataset):
    """One row per real item: ``item_id``, ``code_0..`` and ``v_0..``; returns the DataFrame."""
    import pandas as pd

    check_export_format(path)
    model.eval()
    columns = {dataset.iid_field: list(dataset.field2id_token[dataset.iid_field][1:])}
    codes, vectors = item_semantic_ids(model), item_vectors(model)
    if codes is not None:
        columns.update({f"code_{level}": codes[1:, level].cpu().numpy() for level in range(codes.shape[1])})
    if vectors is not None:
        vectors = vectors[1:].float().cpu().numpy()
        columns.update({f"v_{d}": vectors[:, d] for d in range(vectors.shape[1])})
    if codes is None and vectors is None:
        getLogger().warning(f"{type(model).__name__} has neither semantic IDs nor an item table: only tokens exported.")
    frame = pd.DataFrame(columns)
    with atomic_output(path) as temporary:
        if path.lower().endswith(".parquet"):
            frame.to_parquet(temporary, index=False)
        else:
            frame.to_csv(temporary, index=False, float_format="%.9g")  # float32 round-trips in 9 digits
    return frame


def run_command(argv=None):
    """Load the checkpoint, write the recommendations and / or the item export; returns a summary."""
    from recbole.utils import ModelType

    from recbole_usr.quick_start import load_data_and_model

    args = parse_args(argv)
    user_tokens = [token.strip() for token in args.user_ids.split(",") if token.strip()] if args.user_ids else None
    config, model, dataset, _, _, _ = load_data_and_model(args.model_file)
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        raise ValueError(f"recbole_usr.recommend needs a sequential model; {config['model']} is not one.")
    summary = {"model": config["model"], "dataset": config["dataset"], "model_file": args.model_file}
    if args.output:
        rows = recommend(model, dataset, args.topk, user_tokens, args.filter_seen_items,
                         args.batch_size or config["eval_batch_size"], show_progress=True)
        write_recommendations(args.output, rows, item_titles(config, dataset))
        summary.update(output=args.output, users=len({row[0] for row in rows}), rows=len(rows))
    if args.export_items:
        frame = export_items(args.export_items, model, dataset)
        summary.update(export_items=args.export_items, items=len(frame))
    getLogger().info(f"recommend: {summary}")
    return summary


def main(argv=None):
    """The ``recbole_usr_recommend`` console script: exit status 0 on success."""
    from recbole_usr.utils import run_console_script

    return run_console_script(run_command, argv)


if __name__ == "__main__":
    sys.exit(main())
