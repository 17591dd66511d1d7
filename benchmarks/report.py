"""Turn ``benchmarks/results/*.json`` into ``benchmarks/RESULTS.md`` and PNG plots.

Published numbers are constants below, each with its source; nothing here computes them.
"""

import glob
import json
import os
import re
import statistics
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
REPORT = os.path.join(ROOT, "benchmarks", "RESULTS.md")
METRICS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "hit@10", "mrr@10"]

# Full ranking, leave-one-out: TIGER paper (Rajput et al. 2023, Table 2), R@5 / N@5 / R@10 / N@10.
PUBLISHED_FULL = {
    "Amazon_Beauty": {
        "SASRec (TIGER paper)": {"recall@5": 0.0387, "ndcg@5": 0.0249, "recall@10": 0.0605, "ndcg@10": 0.0318},
        "S3-Rec (TIGER paper)": {"recall@5": 0.0387, "ndcg@5": 0.0244, "recall@10": 0.0647, "ndcg@10": 0.0327},
        "TIGER (TIGER paper)": {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384},
    },
    "Amazon_Sports_and_Outdoors": {
        "SASRec (TIGER paper)": {"recall@5": 0.0233, "ndcg@5": 0.0154, "recall@10": 0.0350, "ndcg@10": 0.0192},
        "S3-Rec (TIGER paper)": {"recall@5": 0.0251, "ndcg@5": 0.0161, "recall@10": 0.0385, "ndcg@10": 0.0204},
        "TIGER (TIGER paper)": {"recall@5": 0.0264, "ndcg@5": 0.0181, "recall@10": 0.0400, "ndcg@10": 0.0225},
    },
}
# 99 sampled negatives (uni99): unified semantic+ID paper (Lin et al. 2025), HR@10 / NDCG@10.
PUBLISHED_UNI99 = {
    "Amazon_Beauty": {"Unified (paper)": {"hit@10": 0.5318, "ndcg@10": 0.3440}, "ID-only (paper)": {"hit@10": 0.4654}},
    "Amazon_Sports_and_Outdoors": {"Unified (paper)": {"hit@10": 0.5247, "ndcg@10": 0.3168}, "ID-only (paper)": {"hit@10": 0.4582}},
}


def load_results():
    records = []
    for path in sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json"))):
        with open(path) as f:
            record = json.load(f)
        record["file"] = os.path.relpath(path, os.path.dirname(REPORT))
        records.append(record)
    return records


def mean_spread(values):
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def command_lines(records):
    """The command behind every row, with the thread count and commit it ran at."""
    lines = ["", "Commands (run from the checkout root):", ""]
    for record in records:
        threads = f"OMP_NUM_THREADS={record['threads']} " if record.get("threads") else ""
        lines.append(f"- {record.get('label', record.get('suite'))}: `{threads}python {record.get('command', '?')}` "
                     f"(commit {record.get('git_commit', '?')}, {record.get('wall_seconds', 0):.0f} s wall)")
    return "\n".join(lines)


def epoch_budget(record):
    """The ``--epochs`` a run was given (early stopping may end it sooner)."""
    found = re.search(r"--epochs=(\d+)", record.get("command", ""))
    return int(found.group(1)) if found else None


def reevaluated_records(records, mode):
    """Runs trained with full-ranking model selection, tested again under ``mode``: one row
    each, carrying the re-evaluation's metrics and both commands."""
    rows = []
    for record in records:
        entry = (record.get("reevaluated") or {}).get(mode)
        if entry and entry.get("test_result"):
            rows.append({**record, "label": f"{record['label']} (best full-ranking checkpoint)",
                         "test_result": entry["test_result"],
                         "command": f"{record['command']}`, then `python {entry['command']}",
                         "git_commit": f"{record.get('git_commit', '?')} / {entry.get('git_commit', '?')}",
                         "wall_seconds": record.get("wall_seconds", 0) + entry.get("wall_seconds", 0)})
    return rows


def metric_table(records, published):
    """Rows grouped by label and epoch budget over seeds: mean ± sd of each metric, then the paper rows."""
    groups = defaultdict(list)
    for record in records:
        if record.get("test_result"):
            groups[(record["label"], epoch_budget(record))].append(record)
    lines = ["| model | seeds | max epochs | epochs run | " + " | ".join(METRICS) + " | source |",
             "|---" * (len(METRICS) + 5) + "|"]
    for (label, budget), runs in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
        cells = [mean_spread([r["test_result"][m] for r in runs if m in r["test_result"]]) for m in METRICS]
        epochs = ",".join(str(len(r.get("train_epoch_seconds") or [])) for r in runs)
        sources = ", ".join(f"[json]({r['file']})" for r in runs)
        lines.append(f"| {label} | {len(runs)} | {budget or '?'} | {epochs} | " + " | ".join(cells) + f" | {sources} |")
    for label, values in (published or {}).items():
        cells = [f"{values[m]:.4f}" if m in values else "" for m in METRICS]
        lines.append(f"| *{label}* | | | | " + " | ".join(cells) + " | published |")
    return "\n".join(lines)


def cost_table(records):
    lines = ["| model | train s/epoch | peak RSS (MiB) | test eval s | item-embedding params | json |", "|---|---|---|---|---|---|"]
    by_label = {}
    for record in records:
        seconds = record.get("train_epoch_seconds") or []
        per_epoch = sum(seconds) / len(seconds) if seconds else float("nan")
        by_label[record["label"]] = per_epoch
        lines.append(f"| {record['label']} | {per_epoch:.1f} | {record.get('peak_memory_mib', float('nan')):.0f} | "
                     f"{record.get('test_seconds', float('nan')):.1f} | {(record.get('parameter_counts') or {}).get('item_embedding', '')} | [json]({record['file']}) |")
    base = by_label.get("SASRec (RecBole, CE)")
    ours = by_label.get("UnifiedSASRec unified")
    if base and ours:
        lines.append(f"\nRatio UnifiedSASRec / RecBole SASRec train epoch time: **{ours / base:.3f}** (target <= 0.2).")
    return "\n".join(lines)


def tokenizer_table(record):
    schemes = record.get("schemes") or {}
    if "schemes" in schemes:
        schemes = schemes["schemes"]
    lines = ["| scheme | activation per level | unique coverage | distinct IDs | largest collision |", "|---|---|---|---|---|"]
    for name, stats in schemes.items():
        if not isinstance(stats, dict) or "activation" not in stats:
            continue
        activation = " / ".join(f"{a:.2%}" for a in stats["activation"])
        lines.append(f"| {name} | {activation} | {stats['unique_coverage']:.2%} | {stats['n_distinct']} | {stats['max_collision']} |")
    lines.append("| *paper (Sentence-T5): euclidean* | 5.86% (level 1) | | | |")
    lines.append("| *paper: cosine* | | 70.13% | | |")
    lines.append("| *paper: hybrid* | 100% / 100% / 100% | 83.27% | | |")
    return "\n".join(lines)


def plot_ablations(records):
    """One PNG per ablation axis: NDCG@10 and Recall@10 against the varied property."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    axes_records = defaultdict(list)
    for record in records:
        if record.get("suite", "").startswith("ablation_") and record.get("test_result"):
            axes_records[record["suite"][len("ablation_"):]].append(record)
    for axis, runs in axes_records.items():
        runs.sort(key=lambda r: str(list(r["overrides"].values())[0]).zfill(8))
        labels = [str(list(r["overrides"].values())[0]) for r in runs]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for metric in ("ndcg@10", "recall@10"):
            ax.plot(labels, [r["test_result"][metric] for r in runs], marker="o", label=metric)
        ax.set_xlabel(axis)
        ax.set_title(f"UnifiedSASRec ablation: {axis} ({runs[0]['dataset']})")
        ax.legend()
        fig.tight_layout()
        path = os.path.join(ROOT, "benchmarks", f"ablation_{axis}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(os.path.basename(path))
    return written


def write_report():
    records = load_results()
    sections = ["# Benchmark results\n",
                "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; each JSON holds the "
                "exact command, git commit, seed, machine and wall time of its run. Rows in *italics* are "
                "published numbers copied from the papers (sources in `benchmarks/report.py`), never produced here.\n"]
    datasets = sorted({r.get("dataset") for r in records if r.get("dataset")})
    for dataset in datasets:
        for mode, published in (("full", PUBLISHED_FULL), ("uni99", PUBLISHED_UNI99)):
            main = [r for r in records if r.get("suite") == "main" and r.get("dataset") == dataset]
            rows = [r for r in main if r.get("mode") == mode] + reevaluated_records(main, mode)
            if rows:
                machines = sorted({r.get("machine", "?") for r in rows})
                sections.append(f"## Main table: {dataset}, {mode} ranking\n\nMachine: {'; '.join(machines)}\n")
                sections.append(metric_table(rows, published.get(dataset)) + "\n" + command_lines(rows) + "\n")
        cost = [r for r in records if r.get("suite") == "cost" and r.get("dataset") == dataset]
        if cost:
            sections.append(f"## Cost: {dataset}\n\nMachine: {cost[0].get('machine', '?')}\n")
            sections.append(cost_table(cost) + "\n" + command_lines(cost) + "\n")
        for record in records:
            if record.get("suite") == "tokenizer" and record.get("dataset") == dataset:
                sections.append(f"## Tokenizer (paper Table 1): {dataset}\n\nCommand: `{record['command']}` "
                                f"({record['wall_seconds']:.0f} s on {record['machine']})\n")
                sections.append(tokenizer_table(record) + "\n")
    for png in plot_ablations(records):
        sections.append(f"![{png}]({png})\n")
    with open(REPORT, "w") as f:
        f.write("\n".join(sections))
    return REPORT


if __name__ == "__main__":
    print(write_report())
