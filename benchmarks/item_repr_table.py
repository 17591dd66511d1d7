"""Item representations for ranking, overall and on head / torso / tail / cold items.

Trains UnifiedSASRec once per item representation (``item_repr``: ID table, semantic-ID
unigram / bigram / SentencePiece, hashed IDs; Singh et al., arXiv 2306.08121), optionally
RecBole's own SASRec, all on the same cold-item split (``--cold_item_ratio`` of the items
never appear in training), once per seed, and writes ``<out>.json``, ``<out>.md`` and
``<out>.png``: Recall@10 / NDCG@10 overall and per slice of the test target (mean ± sd over
the seeds) under both full-ranking protocols (the user's seen items kept, RecBole's; removed,
the eSASRec benchmark's), with the item-representation parameter counts.

    python benchmarks/item_repr_table.py --quick            # ml-100k, 5 epochs, a few minutes on CPU
    python benchmarks/item_repr_table.py --dataset Amazon_Beauty --epochs 50
    # issue 17's strong-recipe table: the unified_ss backbone, every table 256-d, 3 seeds
    python benchmarks/item_repr_table.py --dataset Amazon_Beauty --epochs 200 --seeds 2020 2021 2022 \
        --reprs id,ngram1,ngram2,ngram2_k64,spm,hash,unified \
        --config_files properties/recipe/unified_ss.yaml --set hidden_size=256
    # the same table in two halves side by side (one CPU core each), then joined
    OMP_NUM_THREADS=1 python benchmarks/item_repr_table.py ... --reprs id,ngram1,ngram2 --out half_a &
    OMP_NUM_THREADS=1 python benchmarks/item_repr_table.py ... --reprs ngram2_k64,spm,hash,unified --out half_b
    python benchmarks/item_repr_table.py ... --reprs id,ngram1,ngram2,ngram2_k64,spm,hash,unified \
        --merge half_a.json half_b.json

Each run's overall numbers with seen items kept are also taken from RecBole's own evaluator
and checked against the slice code's (``matches_recbole`` in the JSON).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
from logging import getLogger

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)

import recbole_usr  # noqa: E402,F401  (compat shim first)
import torch  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

from recbole_usr.data.cold_start import create_dataset  # noqa: E402
from recbole_usr.evaluation import evaluate_slices  # noqa: E402
from recbole_usr.evaluation.seen_items import SeenItemMask  # noqa: E402
from recbole_usr.evaluation.slices import SLICE_NAMES, format_slice_table  # noqa: E402
from recbole_usr.quick_start import (  # noqa: E402
    build_config,
    build_model,
    item_parameter_counts,
    record_epochs,
    unique_checkpoint_path,
)
from recbole_usr.shared_dirs import recbole_dirs_shared  # noqa: E402
from recbole_usr.utils import get_trainer  # noqa: E402
from benchmarks.child import runtime  # noqa: E402
from benchmarks.figures import finish_figure, versions_text  # noqa: E402
from benchmarks.run import provenance  # noqa: E402

# name -> (model, properties); every UnifiedSASRec variant has a 64-d item table.
REPRESENTATIONS = {
    "id": ("UnifiedSASRec", {"item_repr": "id"}),
    "ngram1": ("UnifiedSASRec", {"item_repr": "ngram", "ngram_n": 1}),
    "ngram2": ("UnifiedSASRec", {"item_repr": "ngram", "ngram_n": 2}),
    # bigrams of a 64-codeword tokenizer: (L-1) x 64^2 rows instead of (L-1) x 256^2
    "ngram2_k64": ("UnifiedSASRec", {"item_repr": "ngram", "ngram_n": 2, "rq_codebook_size": 64}),
    "spm": ("UnifiedSASRec", {"item_repr": "spm"}),
    "hash": ("UnifiedSASRec", {"item_repr": "hash"}),
    "unified": ("UnifiedSASRec", {"item_repr": "unified"}),
    "sasrec": ("SASRec", {}),  # RecBole's SASRec: ID table, prefix training (slow on CPU)
}
DEFAULT_REPRS = "id,ngram1,ngram2,spm,hash"
# a run's per-slice metrics under each full-ranking protocol -> how the report names it
PROTOCOL_SLICES = ("slices", "slices_seen_removed")
PROTOCOL_TITLES = {"slices": "Seen items kept (RecBole's protocol)",
                   "slices_seen_removed": "Seen items removed (the eSASRec benchmark's protocol)"}
K = 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="Amazon_Beauty")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 50; 5 with --quick)")
    parser.add_argument("--reprs", default=DEFAULT_REPRS, help=f"comma list of {', '.join(REPRESENTATIONS)}")
    parser.add_argument("--cold_item_ratio", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="one run per representation and seed; ~ = the config's seed (2020)")
    parser.add_argument("--out", default=None, help="output path without extension "
                        "(default benchmarks/results/item_repr_<dataset>)")
    parser.add_argument("--quick", action="store_true", help="ml-100k and 5 epochs: a few minutes on CPU")
    parser.add_argument("--config_files", nargs="*", default=[], help="extra property yamls for every run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra properties for every run, e.g. rq_codebook_size=64")
    parser.add_argument("--keep_checkpoints", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs of an existing <out>.json made with the same settings and train "
                             "only the representation / seed pairs it lacks (a long table finished in pieces)")
    parser.add_argument("--merge", nargs="+", default=[], metavar="TABLE.json",
                        help="start from the runs of these tables (the same settings, disjoint representation / "
                             "seed pairs: e.g. two halves of one table run side by side) and train only what "
                             "they lack")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset = "ml-100k" if args.dataset == parser.get_default("dataset") else args.dataset
        args.epochs = args.epochs or 5
    args.epochs = args.epochs or 50
    args.reprs = [name.strip() for name in args.reprs.split(",") if name.strip()]
    unknown = [name for name in args.reprs if name not in REPRESENTATIONS]
    if unknown:
        parser.error(f"unknown representation(s) {unknown}; choose from {list(REPRESENTATIONS)}")
    args.out = args.out or os.path.join(CHECKOUT, "benchmarks", "results", f"item_repr_{args.dataset}")
    return args


def parse_overrides(pairs):
    """``KEY=VALUE`` strings -> dict; values parsed as YAML (numbers, lists, booleans)."""
    import yaml

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got '{pair}'")
        overrides[key] = yaml.safe_load(value)
    return overrides


def table_parameter_counts(model):
    """Item-representation parameter counts, and the one number the table shows."""
    counts = item_parameter_counts(model)
    main = counts.get("item_embedding", counts.get("id_table"))
    counts["total_model"] = sum(p.numel() for p in model.parameters())
    return counts, main


def train_and_evaluate(name, model_name, properties, args, extra, seed=None):
    """One representation and seed: train, test with RecBole, then per-slice metrics of the best model."""
    config_dict = {
        "epochs": args.epochs,
        "cold_item_ratio": args.cold_item_ratio,
        "show_progress": False,
        **properties,
        **extra,
        **({"seed": seed} if seed is not None else {}),
    }
    with recbole_dirs_shared():  # two tables started in one checkout make log/ and saved/ at once
        config = build_config(model_name, args.dataset, args.config_files, config_dict)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        logger = getLogger()
        logger.info(f"=== {name}: {model_name} {properties}")
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        start = time.time()
        model = build_model(config, train_data._dataset)
        build_seconds = time.time() - start
        trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
        trainer.saved_model_file = unique_checkpoint_path(config)
        epoch_seconds = record_epochs(trainer)["train_epoch_seconds"]
        start = time.time()
        best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        train_seconds = time.time() - start
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        seen_mask = SeenItemMask(train_data._dataset, trainer.device)
        slices, slices_seen_removed = evaluate_slices(trainer.model, test_data, train_data._dataset, topk=[K],
                                                      seen_mask=[None, seen_mask])  # one scoring pass
        if not args.keep_checkpoints and os.path.isfile(trainer.saved_model_file):
            os.remove(trainer.saved_model_file)
        counts, main_count = table_parameter_counts(trainer.model)
        matches = all(
            abs(slices["overall"][f"{metric}@{K}"] - test_result[f"{metric}@{K}"]) <= 1e-4
            for metric in ("recall", "ndcg")
            if f"{metric}@{K}" in test_result
        )
        return {
            "seed": config["seed"],
            "model": model_name,
            "properties": properties,
            "item_parameters": main_count,
            "item_dim": int(getattr(getattr(trainer.model, "item_repr", None), "dim", config["hidden_size"] or 0)),
            "parameter_counts": counts,
            "code_statistics": getattr(getattr(trainer.model, "item_repr", None), "code_statistics", None),
            "slices": slices,  # seen items kept (RecBole's protocol)
            "slices_seen_removed": slices_seen_removed,  # removed (the eSASRec benchmark's)
            "recbole_test_result": dict(test_result),
            "matches_recbole": matches,
            "best_valid_score": best_valid_score,
            "best_valid_result": dict(best_valid_result or {}),
            "n_cold_items_held_out": int(len(getattr(dataset, "cold_items", []))),
            "build_seconds": build_seconds,
            "train_seconds": train_seconds,
            "train_epoch_seconds": epoch_seconds,
            "stopped_by_time_budget": bool(getattr(trainer, "stopped_by_time_budget", False)),
        }


def aggregate(runs):
    """A representation's row from its runs (one per seed): each slice's Recall / NDCG as the
    mean over seeds, with ``<metric>_sd`` beside it when there are several; a slice empty in
    some run (``evaluate_slices`` gives None, a JSON record may hold NaN) keeps the first
    run's value and gets no mean."""
    row = {key: value for key, value in runs[0].items()
           if key not in ("seed", "recbole_test_result") + PROTOCOL_SLICES}
    row["seeds"] = [r["seed"] for r in runs]
    for protocol in PROTOCOL_SLICES:
        if not all(protocol in r for r in runs):  # a record from before the protocol was measured
            continue
        row[protocol] = {}
        for slice_name, entry in runs[0][protocol].items():
            merged = dict(entry)
            for metric in entry:
                if not metric.startswith(("recall@", "ndcg@")):
                    continue
                values = [r[protocol][slice_name][metric] for r in runs]
                if any(v is None or math.isnan(v) for v in values):
                    continue
                merged[metric] = statistics.fmean(values)
                if len(values) > 1:
                    merged[f"{metric}_sd"] = statistics.stdev(values)
            row[protocol][slice_name] = merged
    row["matches_recbole"] = all(r["matches_recbole"] for r in runs)
    row["train_seconds"] = statistics.fmean(r["train_seconds"] for r in runs)
    row["epochs_run"] = [len(r["train_epoch_seconds"]) for r in runs]
    row["stopped_by_time_budget"] = [bool(r.get("stopped_by_time_budget")) for r in runs]
    return row


def write_plot(report, path):
    """NDCG@10 and Recall@10 per slice, a bar per representation (mean ± sd over seeds); a row
    of panels per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = ("overall",) + SLICE_NAMES
    results = report["results"]
    protocols = [p for p in PROTOCOL_SLICES if all(p in row for row in results.values())]
    fig, axes = plt.subplots(len(protocols), 2, figsize=(11, 3.3 * len(protocols)), squeeze=False)
    width = 0.8 / max(1, len(results))
    for protocol, axes_row in zip(protocols, axes):
        for ax, metric in zip(axes_row, (f"ndcg@{K}", f"recall@{K}")):
            for i, (name, row) in enumerate(results.items()):
                means = [row[protocol].get(s, {}).get(metric) for s in slices]
                means = [float("nan") if mean is None else mean for mean in means]  # an empty slice: no bar
                sds = [row[protocol].get(s, {}).get(f"{metric}_sd", 0.0) for s in slices]
                ax.bar([j + i * width for j in range(len(slices))], means, width, yerr=sds, capsize=2,
                       label=f"{name} ({row['item_parameters']:,})", color=f"C{i}")
            ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(slices))])
            ax.set_xticklabels(slices, fontsize=8)
            ax.set_ylabel(f"test {metric}", fontsize=8)
            ax.set_title(PROTOCOL_TITLES[protocol], fontsize=8)
            ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=6, title="representation (item params)", title_fontsize=6)
    versions = report_versions(report)
    seeds = sorted({s for row in results.values() for s in row["seeds"]})
    earlier = report.get("earlier_commands", [])
    kept = f" (+ runs of {len(earlier)} earlier command(s): see the .md)" if earlier else ""
    finish_figure(fig, path, f"{report['command']}{kept} | code {report.get('git_describe')} | seeds {seeds} | "
                  f"{report.get('threads')} thread(s) | {versions} | {report.get('machine')}",
                  f"Item representations on {report['dataset']}: overall and by test-target popularity")


def report_versions(report):
    """The package versions of every command whose runs the table holds (a resumed table keeps
    runs made under an earlier command's packages)."""
    return versions_text(report.get("versions"), *(e.get("versions") for e in report.get("earlier_commands", [])))


def markdown_report(report):
    lines = [
        f"# Item representations on {report['dataset']}",
        "",
        f"Command: `{report.get('command', '?')}` (commit {report.get('git_commit', '?')}, "
        f"{report.get('machine', '?')}, {report.get('threads', '?')} torch thread(s))"
        + "".join(f"; runs kept from `{e['command']}` ({e.get('git_describe')})"
                  for e in report.get("earlier_commands", [])) + ".",
        f"Packages: {report_versions(report)}.",
        "",
        f"UnifiedSASRec unless noted, {report['epochs']} epochs max, seeds "
        f"{sorted({s for r in report['results'].values() for s in r.get('seeds', [])}) or '?'} "
        "(mean ± sd where several), "
        f"cold_item_ratio={report['cold_item_ratio']}, popularity slices {report['popularity_slices']} "
        "(head = most popular 20% of warm items, tail = least popular 20%, cold = no training interaction). "
        f"R = Recall@{K}, N = NDCG@{K} of the test target; item params = trainable item-representation parameters. "
        + ("Held-out items are no training candidates (train_exclude_cold_items: True)."
           if report.get("train_exclude_cold_items", True) else
           "Held-out items are scored as negatives in the training softmax (train_exclude_cold_items: False), "
           "as RecBole's own models do."),
        "",
    ]
    for protocol in PROTOCOL_SLICES:
        rows = [(name, r["item_parameters"], r[protocol]) for name, r in report["results"].items() if protocol in r]
        if rows:
            lines += [f"{PROTOCOL_TITLES[protocol]}:", "", format_slice_table(rows, K), ""]
    if report["results"]:
        first = next(iter(report["results"].values()))["slices"]
        sizes = ", ".join(
            f"{s}: {first[s]['n_targets']} targets / {first[s]['n_items']} items" for s in ("overall",) + SLICE_NAMES
        )
        lines += [f"Test rows per slice: {sizes}.", ""]
    models = ", ".join(f"{name}: {r['model']} {r['item_dim']}-d" for name, r in report["results"].items())
    lines.append(f"Models and item widths: {models}.")
    codes = {name: r["code_statistics"] for name, r in report["results"].items() if r.get("code_statistics")}
    if codes:
        name, stats = next(iter(codes.items()))
        lines.append(
            f"Frozen semantic IDs ({name}): {stats['n_distinct']} distinct of {stats['n_items']} items, "
            f"per-level codebook activation {[round(a, 3) for a in stats['activation']]}."
        )
    checks = {name: r["matches_recbole"] for name, r in report["results"].items()}
    lines.append(f"Overall metrics equal RecBole's evaluator: {checks}.")
    timing = ", ".join(
        f"{name} {r['train_seconds']:.0f}s ("
        + "/".join(f"{n}{' ‡' if stopped else ''}"
                   for n, stopped in zip(r["epochs_run"], r["stopped_by_time_budget"]))
        + " epochs)"
        for name, r in report["results"].items()
    )
    lines.append(f"Training time: {timing} (‡: stopped by `train_time_budget`, its best epoch so far tested).")
    return "\n".join(lines) + "\n"


def write_report(report, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=2, default=float)
    with open(out + ".md", "w") as f:
        f.write(markdown_report(report))
    if report["results"]:
        write_plot(report, out + ".png")


# what a resumed table must share with the report it adds runs to
RESUME_KEYS = ("dataset", "epochs", "cold_item_ratio", "extra_properties", "config_files")


def resumed_report(report, paths):
    """``report`` (a new table's header) holding the runs of each earlier table in ``paths``
    (``<out>.json`` for ``--resume``, the halves of a table run side by side for ``--merge``)
    when it was made with the same settings (as far as it records them: older reports lack
    ``config_files``); the earlier commands are kept in ``earlier_commands``. A representation
    and seed found in two of them is refused: which run counts would be a guess."""
    for path in paths:
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            earlier = json.load(f)
        differing = [key for key in RESUME_KEYS if key in earlier and earlier[key] != report[key]]  # as recorded
        if differing:
            raise SystemExit(f"{path} was made with other settings ({', '.join(differing)}: "
                             f"{[earlier.get(key) for key in differing]} there, {[report[key] for key in differing]} "
                             "now); choose another --out or the same settings.")
        report["earlier_commands"] = report.get("earlier_commands", []) + earlier.get("earlier_commands", []) + [
            {"command": earlier["command"], "git_describe": earlier.get("git_describe"),
             "versions": earlier.get("versions")}]
        for name, runs in earlier["runs"].items():
            have = {run["seed"] for run in report["runs"].get(name, [])}
            twice = sorted(have & {run["seed"] for run in runs})
            if twice:
                raise SystemExit(f"{path}: {name} seed(s) {twice} are also in another table given; "
                                 "merge tables of disjoint representation / seed pairs.")
            report["runs"].setdefault(name, []).extend(runs)
    report["results"] = {name: aggregate(runs) for name, runs in report["runs"].items()}
    return report


def main(argv=None):
    args = parse_args(argv)
    extra = parse_overrides(args.set)
    report = {
        "command": "python benchmarks/item_repr_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **provenance(),
        "threads": torch.get_num_threads(),
        "dataset": args.dataset,
        "epochs": args.epochs,
        "cold_item_ratio": args.cold_item_ratio,
        "train_exclude_cold_items": extra.get("train_exclude_cold_items", True),
        "popularity_slices": extra.get("popularity_slices", [0.2, 0.8]),
        "extra_properties": extra,
        "config_files": args.config_files,
        "results": {},  # per representation: mean ± sd over its seeds (aggregate)
        "runs": {},  # per representation: one record per seed
    }
    earlier_tables = args.merge + ([args.out + ".json"] if args.resume else [])
    missing = [path for path in args.merge if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f"--merge: no such table {missing}")
    report = resumed_report(report, earlier_tables)
    written = False
    for name in args.reprs:
        model_name, properties = REPRESENTATIONS[name]
        for seed in args.seeds or [None]:
            if seed is not None and seed in {run["seed"] for run in report["runs"].get(name, [])}:
                print(f"[{name} seed {seed}] kept from {', '.join(earlier_tables)}", flush=True)
                continue
            start = time.time()
            run = train_and_evaluate(name, model_name, properties, args, extra, seed)
            report["runs"].setdefault(name, []).append(run)
            report["results"][name] = aggregate(report["runs"][name])
            report.update(runtime())
            overall = run["slices"]["overall"]
            print(f"[{name} seed {run['seed']}] R@{K}={overall[f'recall@{K}']:.4f} N@{K}={overall[f'ndcg@{K}']:.4f} "
                  f"({time.time() - start:.0f}s)", flush=True)
            write_report(report, args.out)  # partial results survive a later failure
            written = True
    if not written:  # a merge or resume with nothing left to train writes the table too
        write_report(report, args.out)
    print(markdown_report(report))
    print(f"Wrote {args.out}.json, {args.out}.md and {args.out}.png")
    return report


if __name__ == "__main__":
    main()
