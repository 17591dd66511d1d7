"""Recipe comparisons: each ``properties/recipe/<name>.yaml`` on each dataset and seed, through
the plugin's CLI, several runs at a time; one JSON per run and a mean ± sd table.

    python -m benchmarks.recipes --datasets Amazon_Beauty --recipes id_ss unified_ss --seeds 2020 2021 2022
    python -m benchmarks.recipes --recipes "unified_ss+id_dim=32+semantic_dim=224" --parallel 4
    python -m benchmarks.recipes --table_only            # rebuild benchmarks/RESULTS.md from existing JSONs

A recipe token is the yaml's name, optionally followed by ``+key=value`` overrides (a variant
of the recipe, named in its file and table row). Each run is
``run_recbole_usr.py --model=UnifiedSASRec --config_files=properties/recipe/<name>.yaml``; its
record holds the command, commit, threads, machine, both full-ranking protocols (seen items
kept, RecBole's; seen items removed, eSASRec's), the uni99 re-test of the best checkpoint,
the time to the best validation epoch and peak memory; ``benchmarks/RESULTS.md`` tabulates
them (``benchmarks.report``). Runs that fail stay in the table.
"""

import argparse
import glob
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import yaml

from benchmarks.run import RESULTS_DIR, ROOT, machine_name, reevaluate, run_json_command, settings_hash, slug

RECIPE_DIR = os.path.join("properties", "recipe")
RETEST_MODE = "uni99"  # the sampled protocol each best checkpoint is re-tested under by default
BUDGET = "train_time_budget"


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


def recipe_settings(token):
    """The properties a recipe token sets: its yaml file, then the token's own overrides."""
    name, overrides = parse_recipe(token)
    with open(os.path.join(ROOT, RECIPE_DIR, f"{name}.yaml"), encoding="utf-8") as f:
        settings = yaml.safe_load(f) or {}
    return {**settings, **{key: yaml.safe_load(value) for key, value in overrides.items()}}


def recipe_settings_hash(dataset, token, threads, extra):
    """Everything a recipe run is given but its seed (``--set`` and threads included)."""
    return settings_hash({"dataset": dataset, "recipe": token, "threads": threads, **extra})


def result_path(dataset, token, seed, threads, extra):
    """One file per dataset, recipe token, seed and settings."""
    settings = recipe_settings_hash(dataset, token, threads, extra)
    return os.path.join(RESULTS_DIR, f"recipe-{slug(dataset)}-{slug(token)}-s{seed}-{settings}.json")


def equivalent_result(dataset, token, seed, threads, extra):
    """The result file of a finished run with this run's settings but for a ``train_time_budget``
    it never reached (it stopped itself within this run's budget, so the budget decided
    nothing), or ``None``: ``--reuse`` then takes it instead of training again."""
    _, overrides = parse_recipe(token)
    wanted = {key: value for key, value in {**overrides, **extra}.items() if key != BUDGET}
    limit = float(extra.get(BUDGET, recipe_settings(token).get(BUDGET, float("inf"))))
    pattern = os.path.join(RESULTS_DIR, f"recipe-{slug(dataset)}-{slug(token)}-s{seed}-*.json")
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            record = json.load(f)
        own = {key: value for key, value in (record.get("overrides") or {}).items() if key != BUDGET}
        if (record.get("label"), record.get("dataset"), record.get("seed"), record.get("threads")) != (
                token, dataset, seed, threads) or own != wanted:
            continue
        if record.get("returncode") == 0 and not record.get("stopped_by_time_budget") \
                and record.get("train_seconds", float("inf")) < limit:
            return path
    return None


def run_recipe(dataset, token, seed, threads, extra, reeval):
    """Train one recipe run in its own process (then re-test it), write its record."""
    name, overrides = parse_recipe(token)
    out = result_path(dataset, token, seed, threads, extra)
    raw = out[: -len(".json")] + ".raw.tmp"
    props = {**overrides, **extra, "seed": seed, "show_progress": False}
    command = [sys.executable, "run_recbole_usr.py", "--model=UnifiedSASRec", f"--dataset={dataset}",
               f"--config_files={os.path.join(RECIPE_DIR, name + '.yaml')}", f"--results_file={raw}"]
    command += [f"--{key}={value}" for key, value in props.items()]
    print(f"[recipes] {token} on {dataset}, seed {seed} ...", flush=True)
    record = {"suite": "recipe", "recipe": name, "label": token, "dataset": dataset, "seed": seed,
              "overrides": {**overrides, **extra}, "machine": machine_name(),
              "settings_hash": recipe_settings_hash(dataset, token, threads, extra),
              **run_json_command(command, raw, threads)}
    with open(out, "w") as f:
        json.dump(record, f, indent=2, default=float)
    for mode in reeval:
        reevaluate(out, mode, threads)
    print(f"[recipes] {token} on {dataset}, seed {seed}: done (return code {record['returncode']})", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["Amazon_Beauty"])
    parser.add_argument("--recipes", nargs="+", default=["id_ss", "unified_ss"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    parser.add_argument("--set", nargs="*", default=[], help="key=value properties for every run")
    parser.add_argument("--reeval", nargs="*", default=[RETEST_MODE], help="re-test each best checkpoint under these modes")
    parser.add_argument("--table_only", action="store_true", help="no runs: rebuild benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    if not args.table_only:
        for token in args.recipes:
            parse_recipe(token)  # fail before any run starts
        jobs = [(d, t, s) for d in args.datasets for s in args.seeds for t in args.recipes]
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            list(pool.map(lambda job: run_recipe(*job, args.threads, extra, args.reeval), jobs))
    from benchmarks.report import write_report

    print(f"[recipes] wrote {write_report()}")


if __name__ == "__main__":
    main()
