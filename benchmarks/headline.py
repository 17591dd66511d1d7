"""The README's headline comparison, built from chosen recipe results: one row per recipe
(mean ± sd over its runs) under both full-ranking protocols, the change of every row against
the first, the published reference, and a bar chart.

    python -m benchmarks.headline --dataset Amazon_Beauty --out benchmarks/results/headline-amazon-beauty-cpu \\
        --row "id_ss=recipe-amazon-beauty-id-ss-item-emb-dropout-prob-0-2-s202?-fedc27ef.json" \\
        --row "unified_ss=recipe-amazon-beauty-unified-ss-s2020-2cfcfa1d.json,recipe-amazon-beauty-unified-ss-s2021-9cc49877.json,recipe-amazon-beauty-unified-ss-s2022-9cc49877.json"

Each ``--row NAME=GLOB[,GLOB...]`` names the result files (under benchmarks/results/) that make a row,
so which runs stand behind a headline is written in its command. Rows must share the
dataset, machine and torch thread count (a headline compares like with like); a row may pool
runs of several commits, which it lists. Writes ``benchmarks/results/headline-<dataset>``
``.md``, ``.json`` and ``.png``, each naming the command, commits, seeds, threads and versions.
"""

import argparse
import glob
import json
import os
import re

from benchmarks.figures import finish_figure, versions_text
from benchmarks.property_sweep import (METRICS, PROTOCOLS, cell, covered, retest_cell, runs_code, seen_share_cell,
                                       summarise)
from benchmarks.recipes import RETEST_MODE, RETEST_NEGATIVES
from benchmarks.report import PUBLISHED_SEEN_REMOVED, best_epoch, succeeded, threads_used, warnings_of, write_markdown_report
from benchmarks.run import RESULTS_DIR, module_command, provenance, slug


def read_rows(row_specs):
    """``[(name, records)]`` from ``NAME=GLOB[,GLOB...]`` specs, files under ``RESULTS_DIR``;
    refuses a spec that is not ``NAME=GLOB`` and a row that matches no file."""
    rows = []
    for spec in row_specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            raise ValueError(f"--row takes NAME=GLOB, got {spec!r}.")
        paths = sorted({p for part in pattern.split(",") for p in glob.glob(os.path.join(RESULTS_DIR, part))})
        if not paths:
            raise ValueError(f"--row {name}: no result file matches {pattern!r} in {RESULTS_DIR}.")
        records = []
        for path in paths:
            with open(path) as f:
                records.append({**json.load(f), "file": os.path.basename(path)})
        rows.append((name, records))
    return rows


def refuse_mixed_runs(rows):
    """A comparison is of runs on one machine at one torch thread count: refuse anything else."""
    found = {(r.get("machine"), threads_used(r)) for _, records in rows for r in records}
    if len(found) > 1:
        raise ValueError("a comparison takes runs of one machine and thread count; found "
                         + "; ".join(f"{m}, {t} thread(s)" for m, t in sorted(found, key=str)) + ".")


def load_rows(dataset, row_specs):
    """``[(name, records)]`` of one dataset's runs on one machine and thread count."""
    rows = read_rows(row_specs)
    datasets = {r.get("dataset") for _, records in rows for r in records}
    if datasets != {dataset}:
        raise ValueError(f"every file must be a {dataset} run; found datasets {sorted(map(str, datasets))}.")
    refuse_mixed_runs(rows)
    return rows


def change(row, baseline, key):
    """Relative change of ``row`` against ``baseline`` on one metric, e.g. ``+3.1%``."""
    mine, theirs = row[key][0], baseline[key][0]
    if mine is None or not theirs:
        return "–"
    return f"{100 * (mine / theirs - 1):+.1f}%"


def size_change(size, baseline):
    """``90.7% smaller``, ``same`` or ``2.0x larger``: an item table against the first row's."""
    if not size or not baseline:
        return ""
    if size == baseline:
        return "same"
    if size < baseline:
        return f"{100 * (1 - size / baseline):.1f}% smaller"
    return f"{size / baseline:.1f}x larger"


def summarise_rows(rows):
    """Per row: :func:`benchmarks.property_sweep.summarise` plus best epochs, peak memory, code."""
    table = []
    for name, records in rows:
        row = summarise(records, name)
        ok = [r for r in records if succeeded(r)]
        row["best_epochs"] = [best_epoch(r) + 1 for r in ok if best_epoch(r) is not None]
        row["peak_memory_mib"] = max((r["peak_memory_mib"] for r in ok if r.get("peak_memory_mib")), default=None)
        row["warnings"] = sorted({w for r in records for w in warnings_of(r)})
        row["files"] = [r["file"] for r in records]
        row["commands"] = sorted({re.sub(r"--seed=\d+", "--seed=<seed>", r.get("command", "")) for r in records})
        table.append(row)
    return table


def write_markdown(path, dataset, table, info):
    columns = [(p, m) for p in PROTOCOLS for m in METRICS[::-1]]  # R@10 then N@10, kept then removed
    header = ["row", "seeds (failed)"] + [f"{'R' if m == 'recall@10' else 'N'}@10 {PROTOCOLS[p]}" for p, m in columns]
    header += [f"N@10 {RETEST_MODE} (sampled)", "seen in top 10 (kept)", "item table", "best epoch", "s to best", "peak RSS MiB", "code"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        budget = " ‡" if row["stopped_by_time_budget"] else ""
        cells = [row["value"], f"{','.join(map(str, row['seeds'])) or 'none'} ({len(row['failed'])})"]
        cells += [cell(row, f"{p}/{m}") for p, m in columns] + [retest_cell(row), seen_share_cell(row)]
        cells += ["–" if row["item_table"] is None else f"{row['item_table']:,}",
                  ", ".join(map(str, row["best_epochs"])) + budget,
                  "–" if row["seconds_to_best_valid"] is None else f"{row['seconds_to_best_valid']:,.0f}",
                  "–" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:,.0f}",
                  ", ".join(row["code"]) + (f" ⚠ {'; '.join(row['warnings'])}" if row["warnings"] else "")]
        lines.append("| " + " | ".join(cells) + " |")
    baseline = table[0]
    for row in table[1:]:
        lines.append(f"| {row['value']} vs {baseline['value']} | | "
                     + " | ".join(change(row, baseline, f"{p}/{m}") for p, m in columns + [(RETEST_MODE, "ndcg@10")])
                     + f" | | {size_change(row['item_table'], baseline['item_table'])} | | | | |")
    published = PUBLISHED_SEEN_REMOVED.get(dataset)
    if published:
        lines.append("| *eSASRec benchmark, SASRec + SS* | | | | "
                     f"*{published['recall@10']:.4f}* | *{published['ndcg@10']:.4f}* | | | | | | | |")
    runs = []
    for row in table:
        runs += [f"- {row['value']}: " + ", ".join(f"`{f}`" for f in row["files"])]
        runs += [f"  - `{c}`" for c in row["commands"]]
    write_markdown_report(
        path, f"Headline: {dataset}", info["command"],
        f"Built at {info['git_describe']} from the result files below; {info['machine']}, "
        f"{info['threads']} torch thread(s) per run, {info['versions']}. Mean ± sd over the seeds listed; "
        "‡: some run stopped by `train_time_budget`. Seen kept: RecBole's protocol; seen removed: the "
        f"eSASRec benchmark's (the published row's). {RETEST_MODE}: each best checkpoint re-tested against "
        f"{RETEST_NEGATIVES} (seeds named where fewer runs were re-tested). Seen in top 10: share of the "
        "seen-kept top 10 that is the user's own history.", [*lines, "", "Runs:", "", *runs])


def write_plot(path, dataset, table, info):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    columns = [(p, m) for p in PROTOCOLS for m in METRICS[::-1]]
    retest = f"{RETEST_MODE}/ndcg@10"
    retested = [row for row in table if row[retest][0] is not None]
    if retested:  # the sampled re-test on its own axis: its scale is ~8x the full ranking's
        fig, (ax, ax_retest) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [4, 1]})
    else:
        fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(table)
    for i, row in enumerate(table):
        means = [row[f"{p}/{m}"][0] or 0.0 for p, m in columns]
        sds = [row[f"{p}/{m}"][1] or 0.0 for p, m in columns]
        ax.bar([j + i * width for j in range(len(columns))], means, width, yerr=sds, capsize=3,
               label=f"{row['value']} ({len(row['seeds'])} seed{'' if len(row['seeds']) == 1 else 's'})",
               color=f"C{i}")
    published = PUBLISHED_SEEN_REMOVED.get(dataset)
    if published:
        for j, (protocol, metric) in enumerate(columns):
            if protocol == "history_removed":
                ax.hlines(published[metric], j - width / 2, j + width * (len(table) - 0.5), colors="k",
                          linestyles="dashed", label="eSASRec benchmark" if metric == "recall@10" else None)
    ax.set_xticks([j + width * (len(table) - 1) / 2 for j in range(len(columns))])
    protocol_lines = {p: name.replace(" (", "\n(") for p, name in PROTOCOLS.items()}  # narrow ticks
    ax.set_xticklabels([f"{m.replace('recall', 'R').replace('ndcg', 'N')}\n{protocol_lines[p]}" for p, m in columns],
                       fontsize=8)
    ax.set_ylabel("test, full ranking", fontsize=8)
    if retested:  # points, not bars: the axis need not start at zero to show a few percent
        for i, row in enumerate(table):
            mean, sd = row[retest]
            if mean is None:  # a row without a re-test says so, rather than leave a gap
                ax_retest.text(i, 0.05, "not re-tested", rotation=90, ha="center", va="bottom", fontsize=6,
                               color=f"C{i}", transform=blended_transform_factory(ax_retest.transData,
                                                                                 ax_retest.transAxes))
            else:
                ax_retest.errorbar(i, mean, yerr=sd or 0.0, marker="o", capsize=3, color=f"C{i}")
                note = covered("", row, row["retest_seeds"]).strip()  # the table cell's seed note, if any
                if note:
                    ax_retest.annotate(note, (i, mean), xytext=(6, 0), textcoords="offset points", fontsize=6,
                                       va="center")
        ax_retest.set_xlim(-0.5, len(table) - 0.5)
        ax_retest.set_xticks([])
        ax_retest.set_xlabel(f"N@10, {RETEST_MODE} re-test\n({RETEST_NEGATIVES})", fontsize=8)
        ax_retest.grid(alpha=0.3, axis="y")
    ax.grid(alpha=0.3, axis="y")
    (ax_retest if retested else ax).legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper left",
                                           bbox_to_anchor=(1.01, 1.0))  # beside the plots, never on them
    codes = runs_code(table)
    seeds = "; ".join(",".join(map(str, row["seeds"])) for row in table)
    finish_figure(fig, path, f"{info['command']} | built at {info['git_describe']} | runs: {codes} | seeds {seeds} | "
                  f"{info['threads']} thread(s) | {info['versions']}",
                  f"{dataset}: " + " vs ".join(row["value"] for row in table))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--row", action="append", required=True, metavar="NAME=GLOB[,GLOB...]",
                        help="a row from these result files; the first row is the baseline")
    parser.add_argument("--out", default=None, help="output path without extension")
    args = parser.parse_args(argv)
    rows = load_rows(args.dataset, args.row)
    table = summarise_rows(rows)
    first = rows[0][1][0]
    info = {**provenance(), "command": module_command("benchmarks.headline", argv),
            "threads": threads_used(first), "machine": first.get("machine"),
            "versions": versions_text(*(r.get("versions") for _, records in rows for r in records))}
    out = args.out or os.path.join(RESULTS_DIR, f"headline-{slug(args.dataset)}")
    write_markdown(out + ".md", args.dataset, table, info)
    write_plot(out + ".png", args.dataset, table, info)
    with open(out + ".json", "w") as f:
        json.dump({"dataset": args.dataset, **info, "rows": table}, f, indent=1, default=str)
    print(f"wrote {out}.md, .json, .png")


if __name__ == "__main__":
    main()
