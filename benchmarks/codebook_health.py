"""Codebooks of end-to-end runs side by side: per level, the share of codewords in use and, with
``rq_distances: learned``, the learned cosine weight, both at each run's best epoch (the
checkpoint that was tested), mean ± sd over seeds, beside test NDCG@10; rows may come from
several datasets, so one figure shows where a learned distance goes on each.

    python -m benchmarks.codebook_health --out benchmarks/results/distance-mix-end-to-end \\
        --row "Beauty, hybrid=recipe-amazon-beauty-unified-ss-s2020-2cfcfa1d.json" \\
        --row "Beauty, learned=recipe-amazon-beauty-unified-ss-rq-distances-learned-s202?-*.json"

The share in use is the tokenizer's own assignment at the end of that epoch, before any
re-seeding (``rq_end_to_end_restarts``), never the codes straight after a restart. Rows of one
dataset must share a machine and torch thread count. Writes ``.md``, ``.json`` and ``.png``.
"""

import argparse
import json
from collections import defaultdict

from benchmarks.figures import finish_figure, versions_text
from benchmarks.headline import read_rows, refuse_mixed_runs
from benchmarks.property_sweep import PROTOCOLS, cell, mean_sd, summarise
from benchmarks.report import best_epoch, succeeded, threads_used, write_markdown_report
from benchmarks.run import module_command, provenance

STATISTICS = {"activation": "codewords in use", "cosine_weight": "learned cosine weight"}


def best_epoch_codebooks(record):
    """``{"activation": [...], "cosine_weight": [...] or None}`` per level at the run's best epoch."""
    epoch = best_epoch(record)
    activation = record.get("codebook_natural_activation") or record.get("codebook_activation") or []
    weights = record.get("codebook_cosine_weight") or []
    if epoch >= len(activation) or (weights and epoch >= len(weights)):
        raise ValueError(f"{record['file']}: no codebook statistics recorded for its best epoch {epoch}.")
    return {"activation": activation[epoch], "cosine_weight": weights[epoch] if weights else None}


def load_rows(row_specs):
    """``[(name, records)]``, each row one dataset's runs; rows of a dataset on one machine and thread count."""
    rows = read_rows(row_specs)
    by_dataset = defaultdict(list)
    for name, records in rows:
        datasets = {r.get("dataset") for r in records}
        if len(datasets) != 1:
            raise ValueError(f"--row {name}: one dataset a row; found {sorted(map(str, datasets))}.")
        by_dataset[datasets.pop()].append((name, records))
    for group in by_dataset.values():
        refuse_mixed_runs(group)
    return rows


def summarise_row(name, records):
    """:func:`benchmarks.property_sweep.summarise` of the row plus its per-level codebook statistics."""
    row = summarise(records, name)
    ok = [r for r in records if succeeded(r)]  # the runs summarise averages
    stats = [best_epoch_codebooks(r) for r in ok]
    row["dataset"] = records[0]["dataset"]
    row["recipes"] = sorted({str(r.get("label") or r.get("recipe") or r.get("model")) for r in records})
    row["best_epochs"] = [best_epoch(r) + 1 for r in ok]
    for key in STATISTICS:
        per_run = [s[key] for s in stats if s[key] is not None]
        row[key] = [mean_sd(list(level)) for level in zip(*per_run)] if per_run else None
    return row


def levels_cell(pairs, n_runs):
    """``0.91 / 0.78 / 0.78`` (one run) or ``0.91 ± 0.02 / ...`` (several): one value per level."""
    if pairs is None:
        return "fixed"
    return " / ".join(f"{m:.2f}" + (f" ± {sd:.2f}" if n_runs > 1 else "") for m, sd in pairs)


def write_markdown(path, table, info):
    header = ["row", "dataset", "recipe", "seeds (failed)", "best epoch", "codewords in use, per level",
              "cosine weight, per level", *(f"N@10 {name}" for name in PROTOCOLS.values()), "code"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [row["value"], row["dataset"], ", ".join(f"`{r}`" for r in row["recipes"]),
                 f"{','.join(map(str, row['seeds'])) or 'none'} ({len(row['failed'])})",
                 ", ".join(map(str, row["best_epochs"])), levels_cell(row["activation"], len(row["seeds"])),
                 levels_cell(row["cosine_weight"], len(row["seeds"])), *(cell(row, f"{p}/ndcg@10") for p in PROTOCOLS),
                 ", ".join(row["code"])]
        lines.append("| " + " | ".join(cells) + " |")
    write_markdown_report(path, "Codebooks at the best epoch", info["command"],
                          f"Built at {info['git_describe']}; {info['machines']}; {info['versions']}. Mean ± sd over the seeds "
                          "listed, at each run's best (tested) epoch. Codewords in use: share of each level's codewords "
                          "some item's code selects, before any re-seeding. Cosine weight: `rq_distances: learned`'s "
                          "per-level weight of the cosine term (1 = cosine, 0 = Euclidean); \"fixed\" for a fixed "
                          "distance. Seen kept: RecBole's protocol; seen removed: the eSASRec benchmark's.", lines)


def write_plot(path, table, info):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learned = any(row["cosine_weight"] for row in table)  # a second panel only where a distance was learned
    fig, axes = plt.subplots(1, 2 if learned else 1, figsize=(11, 3.8), squeeze=False)
    axes = axes[0]
    n_levels = max(len(row["activation"]) for row in table if row["activation"])
    width = 0.8 / len(table)
    for i, row in enumerate(table):
        label = f"{row['value']} ({len(row['seeds'])} seed{'' if len(row['seeds']) == 1 else 's'})"
        if row["activation"]:
            axes[0].bar([level + i * width for level in range(len(row["activation"]))],
                        [m for m, _ in row["activation"]], width, yerr=[sd or 0.0 for _, sd in row["activation"]],
                        capsize=3, color=f"C{i}", label=label)
        if row["cosine_weight"]:
            axes[1].errorbar(range(1, len(row["cosine_weight"]) + 1), [m for m, _ in row["cosine_weight"]],
                             yerr=[sd or 0.0 for _, sd in row["cosine_weight"]], marker="o", capsize=3,
                             color=f"C{i}")
    axes[0].set_xticks([level + width * (len(table) - 1) / 2 for level in range(n_levels)])
    axes[0].set_xticklabels([f"level {level + 1}" for level in range(n_levels)])
    axes[0].set_ylabel("share of codewords in use", fontsize=8)
    axes[0].set_ylim(0, 1.05)
    if learned:
        hybrid = [1.0] * (n_levels - 1) + [0.0]  # the paper's fixed hybrid: cosine, ..., cosine, Euclidean
        axes[1].plot(range(1, n_levels + 1), hybrid, "k--", alpha=0.5, label="fixed hybrid (the paper's)")
        axes[1].set_xticks(range(1, n_levels + 1))
        axes[1].set_xticklabels([f"level {level}" for level in range(1, n_levels + 1)])
        axes[1].set_ylabel("cosine weight (1 cosine, 0 Euclidean)", fontsize=8)
        axes[1].set_ylim(-0.05, 1.05)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    handles, labels = [sum(pair, []) for pair in zip(*(ax.get_legend_handles_labels() for ax in axes))]
    axes[-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    runs = "; ".join(f"{row['value']}: {', '.join(row['recipes'])}, seeds {','.join(map(str, row['seeds']))} "
                     f"({', '.join(row['code'])})" for row in table)
    finish_figure(fig, path, f"{info['command']} | built at {info['git_describe']} | runs (code): {runs} | "
                  f"{info['machines']} | {info['versions']}",
                  "Codebooks at the best epoch, end to end: codewords in use"
                  + (" and the learned distance per level" if learned else " per level"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", action="append", required=True, metavar="NAME=GLOB[,GLOB...]",
                        help="a row from these result files (under benchmarks/results/), one dataset each")
    parser.add_argument("--out", required=True, help="output path without extension")
    args = parser.parse_args(argv)
    rows = load_rows(args.row)
    table = [summarise_row(name, records) for name, records in rows]
    records = [r for _, rs in rows for r in rs]
    machines = sorted({f"{r.get('dataset')}: {r.get('machine')}, {threads_used(r)} torch thread(s) per run" for r in records})
    info = {**provenance(), "command": module_command("benchmarks.codebook_health", argv),
            "machines": "; ".join(machines), "versions": versions_text(*(r.get("versions") for r in records))}
    write_markdown(args.out + ".md", table, info)
    write_plot(args.out + ".png", table, info)
    with open(args.out + ".json", "w") as f:
        json.dump({**info, "rows": table}, f, indent=1, default=str)
    print(f"wrote {args.out}.md, .json, .png")


if __name__ == "__main__":
    main()
