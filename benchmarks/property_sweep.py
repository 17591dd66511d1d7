"""Accuracy as one property of a recipe varies (issue 17: ID width, codebook size, unique last
level, lookup distance), under both full-ranking protocols, mean ± sd over seeds.

    python -m benchmarks.property_sweep --recipe unified_ss --property id_dim --values 0 4 8 16 32 64 \\
        --datasets Amazon_Beauty Amazon_Sports_and_Outdoors --seeds 2020 2021 2022
    python -m benchmarks.property_sweep --recipe unified_ss --property rq_codebook_size --values 64 256 1024
    python -m benchmarks.property_sweep --recipe unified_ss+id_dim=0+semantic_dim=256 \\
        --property rq_unique_last_level --values False True
    python -m benchmarks.property_sweep --property recipe --values id_ss unified_ss --datasets ml-100k

``--property recipe`` compares whole recipe tokens instead (each value is a recipe; issue 17's
unified-vs-ID question on other domains).

Every run is a recipe run of :mod:`benchmarks.recipes` (``<recipe>+<property>=<value>``, its own
JSON under benchmarks/results/, kept in RESULTS.md's recipe table); ``--reuse`` skips runs whose
JSON already exists or that match a finished run given the same properties (under any token, or
a ``train_time_budget`` it never reached: :func:`benchmarks.recipes.equivalent_result`); a value
the recipe already runs with (its yaml's or the model's default) is the recipe's own run
(``unified_ss`` for ``id_dim`` 8), so one setting has one file. Each best checkpoint is re-tested
against 99 sampled negatives (``--reeval uni99``, as the recipe runner does). Writes ``<out>.json``, ``.md`` and
``.png`` (default ``benchmarks/results/sweep-<recipe>-<property>``): NDCG@10 and Recall@10, seen
items kept (RecBole's protocol) and removed (eSASRec's), and uni99 NDCG@10, against the value and
the item table's size, with the command, code, seeds, threads and versions. Failed runs are
listed, never averaged.
"""

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

import yaml

from benchmarks.figures import finish_figure, versions_text
from benchmarks.recipes import (
    RETEST_MODE,
    equivalent_result,
    parse_recipe,
    recipe_settings,
    result_path,
    run_recipe,
)
from benchmarks.report import code_label, succeeded, write_markdown_report
from benchmarks.run import RESULTS_DIR, code_state, slug

PROTOCOLS = {"history_kept": "seen kept (RecBole)", "history_removed": "seen removed (eSASRec)"}
METRICS = ("ndcg@10", "recall@10")
COLORS = {"history_kept": "C0", "history_removed": "C1", RETEST_MODE: "C2"}
SEEN_SHARE = "seen_share@10"  # share of the seen-kept top 10 that is the user's history


def mean_sd(values):
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def seen_share_of(record):
    """The run's ``seen_share@10`` (seen items kept), from its test or else from a full-ranking
    re-test (``--reeval full``: runs that predate the statistic); ``None`` if neither has it."""
    for source in (record, (record.get("reevaluated") or {}).get("full") or {}):
        share = (source.get("seen_share") or {}).get(SEEN_SHARE)
        if share is not None:
            return share
    return None


def summarise(records, value):
    """One table row: a value's mean ± sd per protocol and metric over its successful runs."""
    ok = [r for r in records if succeeded(r)]
    row = {"value": value, "seeds": [r["seed"] for r in ok], "failed": [r["seed"] for r in records if r not in ok],
           "item_table": (ok[0]["parameter_counts"].get("item_embedding") if ok else None),
           "stopped_by_time_budget": any(r.get("stopped_by_time_budget") for r in ok),
           "seconds_to_best_valid": mean_sd([r["seconds_to_best_valid"] for r in ok
                                             if r.get("seconds_to_best_valid") is not None])[0]}
    for protocol in PROTOCOLS:
        for metric in METRICS:
            row[f"{protocol}/{metric}"] = mean_sd([r["test_result_by_protocol"][protocol][metric] for r in ok])
    retested = [(r["seed"], r["reevaluated"][RETEST_MODE]) for r in ok if RETEST_MODE in (r.get("reevaluated") or {})]
    retested = [(seed, t) for seed, t in retested if t.get("returncode") == 0]
    row[f"{RETEST_MODE}/ndcg@10"] = mean_sd([t["test_result"]["ndcg@10"] for _, t in retested])
    row["retest_seeds"] = [seed for seed, _ in retested]
    shares = [seen_share_of(r) for r in ok]
    row[SEEN_SHARE] = mean_sd([s for s in shares if s is not None])
    row["seen_share_seeds"] = [r["seed"] for r, s in zip(ok, shares) if s is not None]
    row["code"] = sorted({code_label(r) for r in records})  # reused runs keep their own commits
    return row


def sweep_tokens(recipe, prop, values):
    """Each value's recipe token: ``<recipe>+<prop>=<value>``, the recipe itself where it
    already runs with ``prop`` at that value (its yaml or UnifiedSASRec's default), or the
    value itself for ``--property recipe``."""
    if prop == "recipe":
        return {value: value for value in values}
    own = recipe_settings(recipe)
    return {value: recipe if prop in own and own[prop] == yaml.safe_load(value) else f"{recipe}+{prop}={value}"
            for value in values}


def sweep_title(info):
    if info["property"] == "recipe":
        return "recipes compared"
    return f"{info['recipe']}: {info['property']} sweep"


def fmt(pair):
    mean, sd = pair
    return "–" if mean is None else f"{mean:.4f} ± {sd:.4f}"


def cell(row, key):
    """``mean ± sd``; a single run has no spread to show."""
    mean, sd = row[key]
    if len(row["seeds"]) > 1 or mean is None:
        return fmt((mean, sd))
    return f"{mean:.4f}"


def covered(text, row, seeds):
    """``text``, naming the seeds it covers where they are fewer than the row's (a column that
    only some runs measured, e.g. a re-test that older runs never had)."""
    if len(seeds) < len(row["seeds"]):
        return f"{text} (seed {','.join(map(str, seeds))})"
    return text


def seen_share_cell(row):
    """The seen share as a percentage (its sd in percentage points)."""
    mean, sd = row[SEEN_SHARE]
    if mean is None:
        return "–"
    seeds = row["seen_share_seeds"]
    return covered(f"{100 * mean:.1f}%" + (f" ± {100 * sd:.1f} pp" if len(seeds) > 1 else ""), row, seeds)


def retest_cell(row):
    """The re-tested (sampled) NDCG@10, mean ± sd over the runs re-tested."""
    mean, sd = row[f"{RETEST_MODE}/ndcg@10"]
    if mean is None:
        return "–"
    seeds = row["retest_seeds"]
    return covered(f"{mean:.4f}" + (f" ± {sd:.4f}" if len(seeds) > 1 else ""), row, seeds)


def runs_code(rows):
    """``8 abc1234; 16 def5678, 0123abc``: each row's code, for a figure's footer."""
    return "; ".join(f"{row['value']} {', '.join(row['code'])}" for row in rows)


def write_markdown(path, info, table):
    header = (["dataset", info["property"], "item table"] + [f"{m} {PROTOCOLS[p]}" for p in PROTOCOLS for m in METRICS]
              + [f"ndcg@10 {RETEST_MODE}", "seen in top 10 (kept)"])
    lines = ["| " + " | ".join(header + ["seeds", "failed", "code"]) + " |", "|" + "---|" * (len(header) + 3)]
    for dataset, rows in table.items():
        for row in rows:
            budget = " ‡" if row["stopped_by_time_budget"] else ""
            cells = [dataset, f"{row['value']}{budget}",
                     "–" if row["item_table"] is None else f"{row['item_table']:,}"]
            cells += [cell(row, f"{p}/{m}") for p in PROTOCOLS for m in METRICS] + [retest_cell(row)]
            cells += [seen_share_cell(row)]
            cells += [",".join(map(str, row["seeds"])) or "–", ",".join(map(str, row["failed"])) or "–",
                      ", ".join(row["code"])]
            lines.append("| " + " | ".join(cells) + " |")
    write_markdown_report(path, sweep_title(info), info["command"],
                          f"Built at {info['git_describe']}; each run's code in the last column. "
                          f"{info['threads']} torch thread(s) per run, {info['machine']}, "
                          f"{info['versions']}. Mean ± sd over the seeds listed; ‡: some run stopped by `train_time_budget` "
                          "(not converged). Item table: trainable item-representation parameters. Seen in top 10: "
                          "share of the top 10, seen items kept, that is the user's own history (the items the "
                          "seen-removed protocol drops).", lines)


def draw_panel(ax, rows, metric, protocols):
    """One metric against the swept value, one line per protocol. The y-axis starts at 0 so
    that one seed's noise does not fill the panel, and a run stopped by ``train_time_budget``
    (‡, not converged) is drawn hollow."""
    for protocol, name in protocols.items():
        means = [r[f"{protocol}/{metric}"][0] for r in rows]
        sds = [r[f"{protocol}/{metric}"][1] for r in rows]
        xs = [j for j, m in enumerate(means) if m is not None]
        ax.errorbar(xs, [means[j] for j in xs], yerr=[sds[j] for j in xs], capsize=3,
                    color=COLORS[protocol], label=name)
        for stopped in (False, True):
            picked = [j for j in xs if bool(rows[j]["stopped_by_time_budget"]) == stopped]
            ax.plot(picked, [means[j] for j in picked], linestyle="none", marker="o", markersize=7,
                    markeredgewidth=1.5, color=COLORS[protocol],
                    markerfacecolor="white" if stopped else COLORS[protocol])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.05)


def write_plot(path, info, table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(metric, PROTOCOLS) for metric in METRICS] + [("ndcg@10", {RETEST_MODE: f"{RETEST_MODE} (sampled)"})]
    fig, axes = plt.subplots(len(table), len(panels), figsize=(4.6 * len(panels), 3.4 * len(table)), squeeze=False)
    for row_axes, (dataset, rows) in zip(axes, table.items()):
        labels = [str(r["value"]) for r in rows]
        for ax, (metric, protocols) in zip(row_axes, panels):
            draw_panel(ax, rows, metric, protocols)
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels([f"{label}\n{r['item_table']:,}" if r["item_table"] else label
                                for label, r in zip(labels, rows)], fontsize=7)
            ax.set_xlabel(f"{info['property']} (and item-table parameters)", fontsize=8)
            ax.set_ylabel(f"test {metric}", fontsize=8)
            ax.set_title(dataset, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    all_rows = [row for rows in table.values() for row in rows]
    notes = []
    if all(len(row["seeds"]) <= 1 for row in all_rows):
        notes.append("one seed per point, so no error bars")
    if any(row["stopped_by_time_budget"] for row in all_rows):
        notes.append("hollow: stopped by train_time_budget (not converged)")
    title = sweep_title(info) + (f" ({'; '.join(notes)})" if notes else "")
    finish_figure(fig, path, f"{info['command']} | built at {info['git_describe']} | runs: {runs_code(all_rows)} | "
                  f"seeds {info['seeds']} | {info['threads']} thread(s) | {info['versions']}", title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="unified_ss", help="recipe token, e.g. unified_ss+id_dim=0")
    parser.add_argument("--property", required=True)
    parser.add_argument("--values", nargs="+", required=True)
    parser.add_argument("--datasets", nargs="+", default=["Amazon_Beauty"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    parser.add_argument("--set", nargs="*", default=[], help="key=value properties for every run")
    parser.add_argument("--reeval", nargs="*", default=[RETEST_MODE], help="re-test each best checkpoint under these modes")
    parser.add_argument("--reuse", action="store_true", help="skip runs whose result JSON exists")
    parser.add_argument("--out", default=None, help="output path without extension")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)
    tokens = sweep_tokens(args.recipe, args.property, args.values)
    for token in tokens.values():
        parse_recipe(token)  # fail before any run starts
    jobs = [(d, tokens[v], s) for d in args.datasets for v in args.values for s in args.seeds]
    paths = {job: result_path(*job, args.threads, extra) for job in jobs}
    if args.reuse:
        for job in jobs:
            equivalent = None if os.path.isfile(paths[job]) else equivalent_result(*job, args.threads, extra)
            if equivalent:
                print(f"[property_sweep] reusing {os.path.basename(equivalent)} (same properties; it "
                      "stopped itself within this run's time budget)", flush=True)
                paths[job] = equivalent
    todo = [job for job in jobs if not (args.reuse and os.path.isfile(paths[job]))]
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        list(pool.map(lambda job: run_recipe(*job, args.threads, extra, args.reeval), todo))

    records = {}
    for job in jobs:
        with open(paths[job]) as f:
            records[job] = json.load(f)
    table = {d: [summarise([records[(d, tokens[v], s)] for s in args.seeds], v) for v in args.values]
             for d in args.datasets}
    first = records[jobs[0]]
    info = {"command": "python -m benchmarks.property_sweep " + " ".join(sys.argv[1:] if argv is None else argv),
            "recipe": "recipes" if args.property == "recipe" else args.recipe, "property": args.property,
            "seeds": args.seeds, "threads": args.threads,
            "git_describe": code_state()["git_describe"], "machine": first.get("machine"),
            "versions": versions_text(*(record.get("versions") for record in records.values()))}
    out = args.out or os.path.join(RESULTS_DIR, f"sweep-{slug(info['recipe'])}-{slug(args.property)}")
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump({**info, "table": table}, f, indent=2)
    write_markdown(out + ".md", info, table)
    write_plot(out + ".png", info, table)
    print(f"[property_sweep] wrote {out}.md, .json, .png")


if __name__ == "__main__":
    main()
