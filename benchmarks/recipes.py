"""Recipe comparisons: each ``properties/recipe/<name>.yaml`` on each dataset and seed, through
the plugin's CLI, several runs at a time; one JSON per run and a mean ± sd table.

    python -m benchmarks.recipes --datasets Amazon_Beauty --recipes id_ss unified_ss --seeds 2020 2021 2022
    python -m benchmarks.recipes --recipes "unified_ss+id_dim=32+semantic_dim=224" --parallel 4
    python -m benchmarks.recipes --table_only            # rebuild the tables from existing JSONs

A recipe token is the yaml's name, optionally followed by ``+key=value`` overrides (a variant
of the recipe, named in its file and table row). Each run is
``run_recbole_usr.py --model=UnifiedSASRec --config_files=properties/recipe/<name>.yaml``; its
record holds the command, commit, threads, machine, both full-ranking protocols (seen items
kept, RecBole's; seen items removed, eSASRec's), the uni99 re-test of the best checkpoint,
the time to the best validation epoch and peak memory. Runs that fail stay in the table.
"""

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

from benchmarks.run import RESULTS_DIR, ROOT, machine_name, reevaluate, run_json_command, slug

RECIPE_DIR = os.path.join("properties", "recipe")
METRICS = ("recall@10", "ndcg@10")


def parse_recipe(token):
    """``"unified_ss+id_dim=32"`` -> ``("unified_ss", {"id_dim": "32"})``."""
    name, *pairs = token.split("+")
    if not os.path.isfile(os.path.join(ROOT, RECIPE_DIR, f"{name}.yaml")):
        raise SystemExit(f"No recipe {os.path.join(RECIPE_DIR, name + '.yaml')}")
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = value
    return name, overrides


def result_path(dataset, token, seed):
    return os.path.join(RESULTS_DIR, f"recipe-{slug(dataset)}-{slug(token)}-s{seed}.json")


def run_recipe(dataset, token, seed, threads, extra, reeval):
    """Train one recipe run in its own process (then re-test it), write its record."""
    name, overrides = parse_recipe(token)
    out = result_path(dataset, token, seed)
    raw = out[: -len(".json")] + ".raw.tmp"
    props = {**overrides, **extra, "seed": seed, "show_progress": False}
    command = [sys.executable, "run_recbole_usr.py", "--model=UnifiedSASRec", f"--dataset={dataset}",
               f"--config_files={os.path.join(RECIPE_DIR, name + '.yaml')}", f"--results_file={raw}"]
    command += [f"--{key}={value}" for key, value in props.items()]
    print(f"[recipes] {token} on {dataset}, seed {seed} ...", flush=True)
    record = {"suite": "recipe", "recipe": name, "label": token, "dataset": dataset, "seed": seed,
              "overrides": {**overrides, **extra}, "machine": machine_name(),
              **run_json_command(command, raw, threads)}
    with open(out, "w") as f:
        json.dump(record, f, indent=2, default=float)
    for mode in reeval:
        reevaluate(out, mode, threads)
    print(f"[recipes] {token} on {dataset}, seed {seed}: done (return code {record['returncode']})", flush=True)
    return out


def mean_sd(values):
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def load_records(dataset):
    records = []
    prefix = f"recipe-{slug(dataset)}-"
    for name in sorted(os.listdir(RESULTS_DIR)):
        if name.startswith(prefix) and name.endswith(".json"):
            with open(os.path.join(RESULTS_DIR, name)) as f:
                records.append(json.load(f))
    return records


def recipe_table(dataset):
    """Markdown: one row per recipe token, mean ± sd over its seeds, failed runs counted.

    Rows never mix commits or thread counts: a token with runs from several of either gets
    one row per (commit, threads)."""
    groups = {}
    for record in load_records(dataset):
        key = (record["label"], record.get("git_commit"), record.get("threads"), record.get("machine"))
        groups.setdefault(key, []).append(record)
    lines = [
        f"### {dataset}: recipes (full ranking, leave-one-out; mean ± sd over seeds)",
        "",
        "| recipe | seeds (failed) | R@10 seen kept | N@10 seen kept | R@10 seen removed | N@10 seen removed "
        "| uni99 HR@10 | uni99 N@10 | s to best valid | best epoch | peak RSS MiB | item params | commit, threads, machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (label, commit, threads, machine), runs in sorted(groups.items(), key=lambda kv: kv[0][0]):
        ok = [r for r in runs if r.get("returncode") == 0 and r.get("test_result_by_protocol")]
        seeds = ",".join(str(r["seed"]) for r in ok)
        failed = len(runs) - len(ok)
        cells = []
        for protocol in ("history_kept", "history_removed"):
            for metric in METRICS:
                cells.append(mean_sd([r["test_result_by_protocol"][protocol][metric] for r in ok
                                      if protocol in r["test_result_by_protocol"]]))
        uni = [r["reevaluated"]["uni99"]["test_result"] for r in ok
               if (r.get("reevaluated") or {}).get("uni99", {}).get("test_result")]
        cells += [mean_sd([u["hit@10"] for u in uni]), mean_sd([u["ndcg@10"] for u in uni])]
        to_best = [r["seconds_to_best_valid"] for r in ok if r.get("seconds_to_best_valid") is not None]
        cells.append(f"{statistics.mean(to_best):.0f}" if to_best else "–")
        cells.append(",".join(str(r.get("best_valid_index")) for r in ok) or "–")
        peaks = [r.get("peak_memory_mib") for r in ok if r.get("peak_memory_mib")]
        cells.append(f"{max(peaks):,.0f}" if peaks else "–")
        counts = ok[0].get("parameter_counts", {}) if ok else {}
        params = counts.get("item_embedding") or counts.get("id_table")
        cells.append(f"{params:,}" if params else "–")
        cells.append(f"{commit}, {threads}, {machine}")
        lines.append(f"| {label} | {seeds or '–'} ({failed}) | " + " | ".join(cells) + " |")
    commands = sorted({r.get("command", "") for r in load_records(dataset)})
    lines += ["", "Commands (seed and results file vary per run):", ""] + [f"- `{c}`" for c in commands]
    return "\n".join(lines) + "\n"


def write_tables(datasets):
    path = os.path.join(RESULTS_DIR, "recipes.md")
    with open(path, "w") as f:
        f.write("# Recipe runs\n\nWritten by `python -m benchmarks.recipes`; one JSON per run beside this file.\n\n")
        for dataset in datasets:
            f.write(recipe_table(dataset) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["Amazon_Beauty"])
    parser.add_argument("--recipes", nargs="+", default=["id_ss", "unified_ss"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    parser.add_argument("--set", nargs="*", default=[], help="key=value properties for every run")
    parser.add_argument("--reeval", nargs="*", default=["uni99"], help="re-test each best checkpoint under these modes")
    parser.add_argument("--table_only", action="store_true", help="no runs: rebuild recipes.md")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    if not args.table_only:
        for token in args.recipes:
            parse_recipe(token)  # fail before any run starts
        jobs = [(d, t, s) for d in args.datasets for s in args.seeds for t in args.recipes]
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            list(pool.map(lambda job: run_recipe(*job, args.threads, extra, args.reeval), jobs))
    print(f"[recipes] wrote {write_tables(args.datasets)}")


if __name__ == "__main__":
    main()
