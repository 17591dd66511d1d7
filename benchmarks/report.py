"""Turn ``benchmarks/results/*.json`` into ``benchmarks/RESULTS.md`` and PNG plots.

Published numbers are constants below, each with its source; nothing here computes them.
"""

import glob
import json
import os
import re
import statistics
from collections import defaultdict

from benchmarks.figures import versions_text

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



def succeeded(record):
    """A run that finished and was tested under both full-ranking protocols: the runs a table averages."""
    return record.get("returncode") == 0 and bool(record.get("test_result_by_protocol"))


def best_epoch(record):
    """The run's best (tested) epoch, counted from 0, or None if it recorded none. Validation runs
    every ``eval_step`` epochs, so the validation index is the epoch only at ``eval_step`` 1; runs
    that did not record ``valid_epochs`` all validated every epoch."""
    index = record.get("best_valid_index")
    if index is None:
        return None
    return record["valid_epochs"][index] if record.get("valid_epochs") else index


def write_markdown_report(path, title, command, about, body):
    """One layout for a benchmark's markdown file: title, the command that built it, what its
    columns mean, then ``body`` (its table and anything after it)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([f"# {title}", "", f"Command: `{command}`", "", about, "", *body, ""]))


def load_results():
    records = []
    for path in sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json"))):
        with open(path) as f:
            record = json.load(f)
        record["file"] = os.path.relpath(path, os.path.dirname(REPORT))
        records.append(record)
    return records


def code_label(record):
    """The code a run used: ``git describe --always --dirty`` plus a hash of the uncommitted
    change when dirty. Records written before provenance was recorded carry only a commit,
    with no dirty flag: they are marked as such."""
    describe = record.get("git_describe")
    if describe is None:
        return str(record.get("git_commit", "?"))
    if record.get("git_dirty"):
        return f"{describe} {record.get('git_diff_sha256', '')}".strip()
    return describe


def threads_used(record):
    """Torch threads the run measured; older records only have the requested (or guessed) count."""
    return record.get("torch_threads") or record.get("threads")


def settings_key(record):
    """Everything a run was given except its seed: the settings hash, or for older records
    the command's flags."""
    if record.get("settings_hash"):
        return record["settings_hash"]
    flags = re.findall(r"--[^\s=]+=\S+", record.get("command", ""))
    return " ".join(sorted(f for f in flags if not f.startswith(("--seed=", "--results_file="))))


def warnings_of(record):
    """Why a record's provenance needs care (shown next to it in every table)."""
    notes = []
    if record.get("git_dirty") or "dirty" in str(record.get("git_describe", "")):
        notes.append("dirty tree")
    if record.get("code_changed_during_run"):
        notes.append("code changed during the run")
    if "git_describe" not in record:
        notes.append("legacy record: commit without dirty flag")
    if record.get("provenance_warning"):
        notes.append(record["provenance_warning"])
    return notes


def code_cell(record):
    notes = warnings_of(record)
    return code_label(record) + (f" **⚠ {'; '.join(notes)}**" if notes else "")


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
        versions = versions_text(record.get("versions"), leave_out=("python",))
        lines.append(f"- {record.get('label', record.get('suite'))}: `{threads}python {record.get('command', '?')}` "
                     f"(code {code_cell(record)}, {threads_used(record) or '?'} torch thread(s), "
                     f"{record.get('device', 'device not recorded')}{', ' + versions if versions else ''}, "
                     f"{record.get('wall_seconds', 0):.0f} s wall)")
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
            both = {"git_commit": f"{record.get('git_commit', '?')} / {entry.get('git_commit', '?')}"}
            if "git_describe" in record or "git_describe" in entry:
                both.update(git_describe=f"{code_label(record)} / {code_label(entry)}",
                            git_dirty=bool(record.get("git_dirty") or entry.get("git_dirty")))
                both.pop("git_commit")
            rows.append({**record, "label": f"{record['label']} (best full-ranking checkpoint)",
                         "test_result": entry["test_result"],
                         "command": f"{record['command']}`, then `python {entry['command']}",
                         "code_changed_during_run": record.get("code_changed_during_run")
                         or entry.get("code_changed_during_run"),
                         "wall_seconds": record.get("wall_seconds", 0) + entry.get("wall_seconds", 0), **both})
    return rows


def metric_table(records, published):
    """One row per label, epoch budget, settings, code and thread count: seeds are averaged
    (mean ± sd) only when all of these agree; then the paper rows."""
    groups = defaultdict(list)
    for record in records:
        if record.get("test_result"):
            key = (record["label"], epoch_budget(record) or 0, settings_key(record), code_label(record),
                   str(threads_used(record)))
            groups[key].append(record)
    lines = ["| model | seeds | max epochs | epochs run | " + " | ".join(METRICS) + " | code | threads | source |",
             "|---" * (len(METRICS) + 7) + "|"]
    for (label, budget, _, _, threads), runs in sorted(groups.items()):
        cells = [mean_spread([r["test_result"][m] for r in runs if m in r["test_result"]]) for m in METRICS]
        epochs = ",".join(str(len(r.get("train_epoch_seconds") or [])) for r in runs)
        sources = ", ".join(f"[json]({r['file']})" for r in runs)
        lines.append(f"| {label} | {len(runs)} | {budget or '?'} | {epochs} | " + " | ".join(cells)
                     + f" | {code_cell(runs[0])} | {threads} | {sources} |")
    for label, values in (published or {}).items():
        cells = [f"{values[m]:.4f}" if m in values else "" for m in METRICS]
        lines.append(f"| *{label}* | | | | " + " | ".join(cells) + " | published | | |")
    return "\n".join(lines)


def cost_table(records):
    """One row per run; the time ratio only between runs of the same code and thread count."""
    lines = ["| model | train s/epoch | peak RSS (MiB) | test eval s | item-embedding params | code | threads | json |",
             "|---|---|---|---|---|---|---|---|"]
    per_epoch = defaultdict(dict)
    for record in records:
        if not record.get("test_result"):
            continue
        seconds = record.get("train_epoch_seconds") or []
        mean = sum(seconds) / len(seconds) if seconds else float("nan")
        per_epoch[(code_label(record), str(threads_used(record)))][record["label"]] = mean
        lines.append(f"| {record['label']} | {mean:.1f} | {record.get('peak_memory_mib', float('nan')):.0f} | "
                     f"{record.get('test_seconds', float('nan')):.1f} | {(record.get('parameter_counts') or {}).get('item_embedding', '')} | "
                     f"{code_cell(record)} | {threads_used(record)} | [json]({record['file']}) |")
    for (code, threads), by_label in sorted(per_epoch.items()):
        base, ours = by_label.get("SASRec (RecBole, CE)"), by_label.get("UnifiedSASRec unified")
        if base and ours:
            lines.append(f"\nRatio UnifiedSASRec / RecBole SASRec train epoch time (code {code}, {threads} thread(s)): "
                         f"**{ours / base:.3f}** (target <= 0.2).")
    return "\n".join(lines)


def failed_runs(records):
    """Every run or re-evaluation that ended without results, so none vanishes."""
    failures = []
    for record in records:
        entries = [(record.get("label") or record.get("suite") or record["file"], record)]
        entries += [(f"{record.get('label')} re-evaluated {mode}", entry)
                    for mode, entry in (record.get("reevaluated") or {}).items()]
        for what, entry in entries:
            if entry.get("error") or entry.get("returncode") not in (None, 0):
                last = (entry.get("error") or "").strip().splitlines()[-1:] or ["?"]
                failures.append(f"| {what} | {record.get('dataset', '?')} | {entry.get('returncode')} | "
                                f"{code_cell(entry)} | `{last[0][:160]}` | [json]({record['file']}) |")
    if not failures:
        return ""
    return "\n".join(["| run | dataset | exit code | code | last error line | json |", "|---|---|---|---|---|---|"]
                     + failures)


def provenance_notes(records):
    """Runs from a dirty tree, or whose code changed while they ran, or marked by hand."""
    lines = []
    for record in records:
        notes = [n for n in warnings_of(record) if not n.startswith("legacy record")]
        if notes:
            lines.append(f"- [{record['file']}]({record['file']}): code {code_label(record)}: {'; '.join(notes)}")
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


# The eSASRec benchmark (arXiv 2508.06450, Table: leave-one-out, SASRec + sampled softmax), seen items
# removed from the ranking (RecTools filter_viewed): Recall@10 / NDCG@10.
PUBLISHED_SEEN_REMOVED = {
    "Amazon_Beauty": {"recall@10": 0.0921, "ndcg@10": 0.0531},
    "Amazon_Sports_and_Outdoors": {"recall@10": 0.0569, "ndcg@10": 0.0314},
}


def recipe_table(records, dataset):
    """Recipe runs (``python -m benchmarks.recipes``): a row per recipe token, settings, code,
    threads and machine, mean ± sd over seeds under both full-ranking protocols, the uni99
    re-test, time to the best validation epoch and peak memory; failed runs counted in their row."""
    groups = defaultdict(list)
    for record in records:
        if record.get("suite") == "recipe" and record.get("dataset") == dataset:
            key = (record["label"], settings_key(record), code_label(record), threads_used(record),
                   record.get("machine"))
            groups[key].append(record)
    if not groups:
        return ""
    lines = ["| recipe | seeds ok (failed) | R@10 seen kept | N@10 seen kept | R@10 seen removed | N@10 seen removed "
             "| uni99 HR@10 | uni99 N@10 | best valid N@10 (epoch) | s to best valid | peak RSS MiB | item params "
             "| code, threads, machine |", "|" + "---|" * 13]
    for (label, _, _, threads, machine), runs in sorted(groups.items(), key=lambda kv: kv[0]):
        ok = [r for r in runs if succeeded(r)]
        cells = []
        for protocol in ("history_kept", "history_removed"):
            for metric in ("recall@10", "ndcg@10"):
                cells.append(mean_spread([r["test_result_by_protocol"][protocol][metric] for r in ok
                                          if protocol in r["test_result_by_protocol"]]))
        uni = [r["reevaluated"]["uni99"]["test_result"] for r in ok
               if (r.get("reevaluated") or {}).get("uni99", {}).get("test_result")]
        cells += [mean_spread([u["hit@10"] for u in uni]), mean_spread([u["ndcg@10"] for u in uni])]
        best = [(max(r["valid_scores"]), r["valid_scores"].index(max(r["valid_scores"])) + 1,
                 "‡" if r.get("stopped_by_time_budget") else "") for r in runs if r.get("valid_scores")]
        cells.append(", ".join(f"{score:.4f} ({epoch}{mark})" for score, epoch, mark in best))
        to_best = [r["seconds_to_best_valid"] for r in ok if r.get("seconds_to_best_valid") is not None]
        cells.append(f"{statistics.mean(to_best):.0f}" if to_best else "")
        peaks = [r["peak_memory_mib"] for r in ok if r.get("peak_memory_mib")]
        cells.append(f"{max(peaks):,.0f}" if peaks else "")
        counts = next((r.get("parameter_counts") for r in ok if r.get("parameter_counts")), {}) or {}
        params = counts.get("item_embedding") or counts.get("id_table")
        cells.append(f"{params:,}" if params else "")
        cells.append(f"{code_cell(runs[0])}, {threads}, {machine}")
        seeds = ",".join(str(r["seed"]) for r in ok) or "none"
        lines.append(f"| {label} | {seeds} ({len(runs) - len(ok)}) | " + " | ".join(cells) + " |")
    published = PUBLISHED_SEEN_REMOVED.get(dataset)
    if published:
        lines.append(f"| *SASRec + SS, eSASRec benchmark (seen removed)* | | | | *{published['recall@10']:.4f}* "
                     f"| *{published['ndcg@10']:.4f}* | | | | | | | |")
    commands = sorted({re.sub(r"--seed=\d+", "--seed=<seed>", r.get("command", "")) for runs in groups.values() for r in runs})
    if any(r.get("stopped_by_time_budget") for runs in groups.values() for r in runs):
        lines.append("\n‡ stopped by `train_time_budget` (no epoch starts after it; the best checkpoint so far was "
                     "tested): not converged if its best epoch is among the last.")
    return "\n".join(lines) + "\n\nCommands:\n\n" + "\n".join(f"- `{c}`" for c in commands) + "\n"


def write_report():
    records = load_results()
    sections = ["# Benchmark results\n",
                "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json`; each JSON holds the "
                "exact command, seed, machine and wall time of its run and its provenance: `git describe --always "
                "--dirty` (with a hash of the uncommitted change when dirty), the versions of torch, numpy, RecBole "
                "and sentence-transformers, the torch thread count and device the run used. Seeds are averaged only "
                "over runs of the same settings, code and thread count; anything else is its own row. "
                "**⚠** marks runs from a dirty tree and *legacy records*, written before this provenance existed "
                "(their commit carries no dirty flag and their thread count is the one requested). Failed runs are "
                "listed at the end. Rows in *italics* are "
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
        recipes = recipe_table(records, dataset)
        if recipes:
            sections.append(f"## Recipes: {dataset} (full ranking, leave-one-out; `python -m benchmarks.recipes`)\n\n"
                            "Each test row under both protocols: RecBole's (the user's seen items stay in the ranking) "
                            "and the eSASRec benchmark's (seen items removed). Best valid N@10 is RecBole's protocol; "
                            "epochs count from 1.\n")
            sections.append(recipes)
        cost = [r for r in records if r.get("suite") == "cost" and r.get("dataset") == dataset]
        if cost:
            sections.append(f"## Cost: {dataset}\n\nMachine: {cost[0].get('machine', '?')}\n")
            sections.append(cost_table(cost) + "\n" + command_lines(cost) + "\n")
        for record in records:
            if record.get("suite") == "tokenizer" and record.get("dataset") == dataset:
                sections.append(f"## Tokenizer (paper Table 1): {dataset}\n\nCommand: `{record['command']}` "
                                f"({record['wall_seconds']:.0f} s on {record['machine']}, code {code_cell(record)}, "
                                f"{threads_used(record) or '?'} torch thread(s))\n")
                sections.append(tokenizer_table(record) + "\n")
    for png in plot_ablations(records):
        sections.append(f"![{png}]({png})\n")
    notes = provenance_notes(records)
    if notes:
        sections.append("## Provenance warnings\n\n" + notes + "\n")
    failures = failed_runs(records)
    sections.append("## Failed runs\n\n" + (failures or "None recorded.") + "\n")
    with open(REPORT, "w") as f:
        f.write("\n".join(sections))
    return REPORT


if __name__ == "__main__":
    print(write_report())
