"""Codebook size and duplicate semantic IDs (issue 17, items 2 and 3): tokenizer statistics.

    python -m benchmarks.codebook_sweep --datasets Amazon_Beauty Amazon_Sports_and_Outdoors \\
        --sizes 64 128 256 512 1024 --seed 2020

For each dataset and codebook size K, ``python -m recbole_usr.tokenize`` fits the hybrid
tokenizer (cosine, cosine, Euclidean; the plugin's defaults otherwise: k-means initialisation,
unused codewords re-seeded between pre-training epochs, never after the last) twice:

- ``nearest``: every level takes the nearest codeword (today's tokenizer);
- ``unique``: ``--rq_unique_last_level=True``, the last level a collision-free matching within
  each code prefix (``recbole_usr/quantization/unique_codes.py``);
- ``learned`` (issue 17, item 4; not in the default ``--variants``): every level looks up with
  ``w cos + (1 - w) Euclidean``, ``w`` learned per level (``--rq_distances=learned``); the
  learned weights are reported.

Statistics are those of the codes the models use (taken after the last epoch, no restart
after it): per-level activation and perplexity, unique coverage (share of items whose full
ID no other item has, no extra level), and the largest collision group, which is also the
number of values TIGER's extra de-duplication level needs. Writes
``benchmarks/results/codebook_sweep.{json,md,png}`` with the command, code state, seed,
torch threads and versions. NDCG@10 per setting needs training runs and is not measured here.
"""

import argparse
import json
import os
import sys

from benchmarks.figures import finish_figure
from benchmarks.run import RESULTS_DIR
from benchmarks.tokenizer_table import provenance_line, run_tokenize

# name: (lookup scheme, extra flags)
VARIANTS = {
    "nearest": ("hybrid", []),
    "unique": ("hybrid", ["--rq_unique_last_level=True"]),
    "learned": ("learned", []),
}
OUTPUT = os.path.join(RESULTS_DIR, "codebook_sweep")


def run_setting(dataset, size, variant, seed, threads):
    scheme, extra = VARIANTS[variant]
    flags = [f"--tokenizer_schemes=[{scheme}]", f"--rq_distances={scheme}", f"--rq_codebook_size={size}", *extra]
    record = run_tokenize(dataset, f"{scheme}-K{size}-{variant}", flags, seed, threads, "codebook_sweep")
    stats = record["schemes"][scheme]
    return {"dataset": dataset, "codebook_size": size, "variant": variant,
            "activation": stats["activation"], "perplexity": stats["perplexity"],
            "unique_coverage": stats["unique_coverage"], "n_distinct": stats["n_distinct"],
            "max_collision": stats["max_collision"], "n_items": stats["n_items"],
            "cosine_weight": stats.get("cosine_weight"),
            "fit_seconds": stats.get("seconds"), "command": record["command"],
            "git_describe": record["git_describe"], "torch_threads": record.get("torch_threads"),
            "versions": record.get("versions"), "machine": record["machine"]}


def write_markdown(path, rows, info):
    lines = ["| dataset | K | variant | cosine weight per level | activation per level | perplexity per level | "
             "unique coverage | largest collision (TIGER dedup values) |", "|---|---:|---|---|---|---|---:|---:|"]
    for r in rows:
        act = " / ".join(f"{100 * a:.1f}%" for a in r["activation"])
        ppl = " / ".join(f"{p:.0f}" for p in r["perplexity"])
        weights = " / ".join(f"{w:.2f}" for w in r["cosine_weight"]) if r.get("cosine_weight") else "1 / 1 / 0 (fixed)"
        lines.append(f"| {r['dataset']} | {r['codebook_size']} | {r['variant']} | {weights} | {act} | {ppl} | "
                     f"{100 * r['unique_coverage']:.2f}% | {r['max_collision']} |")
    text = ["# Codebook size, duplicate semantic IDs and the lookup distance", "",
            "Statistics of the codes the models use. *nearest*: hybrid lookup (cosine, cosine, Euclidean), every "
            "level takes its nearest codeword; *unique*: the same with `--rq_unique_last_level=True` (items sharing "
            "the first two codes matched to distinct last codewords at the least total distance; items fitted on "
            "first); *learned*: `--rq_distances=learned` (each level's lookup `w cos + (1 - w) Euclidean`, `w` "
            "learned from the reconstruction loss, starting at 0.5). Unique coverage: share of items whose 3-code "
            "ID no other item has, with no extra level.", "", *lines, "",
            f"Provenance: {provenance_line(info)}", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(text))


def write_plot(path, rows, info):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if len({r["codebook_size"] for r in rows}) == 1:
        return write_bar_plot(path, rows, info, datasets, plt)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.2 * len(datasets)), squeeze=False)
    for row_axes, dataset in zip(axes, datasets):
        for variant, style in (("nearest", "-"), ("unique", "--"), ("learned", ":")):
            mine = sorted((r for r in rows if r["dataset"] == dataset and r["variant"] == variant),
                          key=lambda r: r["codebook_size"])
            if not mine:
                continue
            sizes = [r["codebook_size"] for r in mine]
            for level in range(len(mine[0]["activation"])):
                row_axes[0].plot(sizes, [100 * r["activation"][level] for r in mine], style, marker="o",
                                 color=f"C{level}", label=f"level {level + 1} ({variant})")
            row_axes[1].plot(sizes, [100 * r["unique_coverage"] for r in mine], style, marker="o", color="k",
                             label=variant)
        row_axes[0].set_ylim(0, 102)  # the question is collapse (the paper: 5.86% at level 1), not the last 0.2%
        for ax, ylabel in zip(row_axes, ("codeword activation (%)", "unique coverage (%)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("codebook size K")
            ax.set_ylabel(ylabel)
            ax.set_title(dataset, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    finish_figure(fig, path, provenance_line(info), "RQ tokenizer: activation and unique IDs by codebook size")


def write_bar_plot(path, rows, info, datasets, plt):
    """One codebook size: per dataset, each variant's per-level activation, unique coverage and
    per-level cosine weight side by side."""
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in rows if r["dataset"] == dataset]
        n_levels = len(mine[0]["activation"])
        labels = ([f"act. L{i + 1}" for i in range(n_levels)] + ["unique IDs"]
                  + [f"cos weight L{i + 1}" for i in range(n_levels)])
        width = 0.8 / len(mine)
        for j, r in enumerate(mine):
            weights = r.get("cosine_weight") or [1.0] * (n_levels - 1) + [0.0]  # the fixed hybrid
            values = [100 * a for a in r["activation"]] + [100 * r["unique_coverage"]] + [100 * w for w in weights]
            name = "hybrid (fixed)" if r["variant"] == "nearest" else r["variant"]
            ax.bar([i + j * width for i in range(len(labels))], values, width, label=name, color=f"C{j}")
        ax.set_xticks([i + width * (len(mine) - 1) / 2 for i in range(len(labels))])
        ax.set_xticklabels(labels, fontsize=7, rotation=30)
        ax.set_ylabel("%", fontsize=8)
        ax.set_title(f"{dataset}, K = {mine[0]['codebook_size']}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    finish_figure(fig, path, provenance_line(info), "RQ tokenizer: fixed hybrid lookup vs learned cosine / Euclidean mix")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["Amazon_Beauty", "Amazon_Sports_and_Outdoors"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256, 512, 1024])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["nearest", "unique"])
    parser.add_argument("--out", default=OUTPUT, help="output path without extension")
    parser.add_argument("--replot", action="store_true", help="no runs: redraw <out>.md and .png from <out>.json")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.out + ".json", encoding="utf-8") as f:
            stored = json.load(f)
        rows, info = stored.pop("rows"), stored
        write_markdown(args.out + ".md", rows, info)
        write_plot(args.out + ".png", rows, info)
        return
    command = "python -m benchmarks.codebook_sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = [run_setting(dataset, size, variant, args.seed, args.threads)
            for dataset in args.datasets for size in args.sizes for variant in args.variants]
    info = {"command": command.strip(), "seed": args.seed, "git_describe": rows[0]["git_describe"],
            "torch_threads": rows[0]["torch_threads"], "versions": rows[0]["versions"],
            "machine": rows[0]["machine"]}
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({**info, "rows": rows}, f, indent=2)
    write_markdown(args.out + ".md", rows, info)
    write_plot(args.out + ".png", rows, info)
    print(f"[codebook_sweep] wrote {args.out}.md, .json, .png")


if __name__ == "__main__":
    main()
