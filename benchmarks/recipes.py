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
import functools
import glob
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import yaml

from benchmarks.run import RESULTS_DIR, ROOT, machine_name, reevaluate, run_json_command, settings_hash, slug

RECIPE_DIR = os.path.join("properties", "recipe")
MODEL_DEFAULTS = os.path.join("properties", "model", "UnifiedSASRec.yaml")
RETEST_MODE = "uni99"  # the sampled protocol each best checkpoint is re-tested under by default
RETEST_NEGATIVES = f"{RETEST_MODE[len('uni'):]} sampled negatives"  # RecBole's uniN: N uniformly sampled
BUDGET = "train_time_budget"


def split_recipe(token):
    """``"unified_ss+id_dim=32"`` -> ``("unified_ss", {"id_dim": "32"})``."""
    name, *pairs = token.split("+")
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = value
    return name, overrides


def parse_recipe(token):
    """:func:`split_recipe` of a token whose recipe file exists in this checkout."""
    name, overrides = split_recipe(token)
    if not os.path.isfile(os.path.join(ROOT, RECIPE_DIR, f"{name}.yaml")):
        raise SystemExit(f"No recipe {os.path.join(RECIPE_DIR, name + '.yaml')}")
    return name, overrides


def recipe_settings(token, commit=None):
    """The properties a recipe run gets: UnifiedSASRec's defaults (every recipe runs it), the
    recipe's yaml file over them, then the token's own overrides; the files as they are now,
    or as they were at ``commit`` (``None`` if that commit or file cannot be read)."""
    name, overrides = parse_recipe(token) if commit is None else split_recipe(token)
    settings = {}
    for path in (MODEL_DEFAULTS, os.path.join(RECIPE_DIR, f"{name}.yaml")):
        text = file_at(path, commit)
        if text is None:
            return None
        settings.update(yaml.safe_load(text) or {})
    return {**settings, **{key: yaml.safe_load(value) for key, value in overrides.items()}}


def file_at(path, commit=None):
    """The text of the checkout's ``path`` now, or at ``commit``; ``None`` if it is not there."""
    if commit is None:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            return f.read()
    git_path = os.path.relpath(os.path.realpath(os.path.join(ROOT, path)), ROOT)  # properties/ is a link
    return committed_file(commit, git_path)


@functools.lru_cache(maxsize=None)
def committed_file(commit, git_path):
    """``git show commit:git_path`` (``None`` if absent): a commit never changes, so each is read
    once per process, however many result records were made at it."""
    shown = subprocess.run(["git", "show", f"{commit}:{git_path}"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def recipe_settings_hash(dataset, token, threads, extra):
    """Everything a recipe run is given but its seed: the recipe's properties as its files say
    now (an edited recipe is another setting, so its runs get another file and ``--reuse`` does
    not take the old ones by name), ``--set`` and threads."""
    return settings_hash({"dataset": dataset, "recipe": token, "threads": threads,
                          "properties": recipe_settings(token), **extra})


def result_path(dataset, token, seed, threads, extra):
    """One file per dataset, recipe token, seed and settings."""
    settings = recipe_settings_hash(dataset, token, threads, extra)
    return os.path.join(RESULTS_DIR, f"recipe-{slug(dataset)}-{slug(token)}-s{seed}-{settings}.json")


def effective_settings(token, extra, commit=None):
    """What a run of ``token`` with ``--set extra`` is given, but its time budget (values parsed
    as yaml, so ``8`` and ``8.0`` agree), from the recipe files now or at ``commit``."""
    settings = recipe_settings(token, commit)
    if settings is None:
        return None
    settings.update({key: yaml.safe_load(str(value)) for key, value in extra.items()})
    settings.pop(BUDGET, None)
    return settings


def equivalent_result(dataset, token, seed, threads, extra):
    """The result file of a finished run given the same properties (under any token: a
    recipe's own default spelt out is the same run; read from the recipe files at the run's
    commit) but for a ``train_time_budget`` it never reached (it stopped itself within this
    run's budget, so the budget decided nothing), or ``None``; the first by file name where
    several qualify. A run the budget stopped is taken only under the same budget on the same
    kind of machine, where training again would stop at the same wall-clock point. ``--reuse``
    then takes it instead of training again. Runs of uncommitted code are never taken."""
    wanted = effective_settings(token, extra)
    defaults = yaml.safe_load(file_at(MODEL_DEFAULTS)) or {}
    limit = budget_seconds(token, extra)
    for path in sorted(glob.glob(os.path.join(RESULTS_DIR, f"recipe-{slug(dataset)}-*-s{seed}-*.json"))):
        with open(path) as f:
            record = json.load(f)
        if (record.get("dataset"), record.get("seed"), record.get("threads"), record.get("returncode"),
                record.get("git_dirty")) != (dataset, seed, threads, 0, False):
            continue
        overrides = record.get("overrides") or {}
        if record.get("stopped_by_time_budget"):
            theirs = budget_seconds(record.get("label", ""), overrides, record.get("git_commit"))
            if theirs != limit or record.get("machine") != machine_name():
                continue
        elif record.get("train_seconds", float("inf")) >= limit:
            continue
        settings = effective_settings(record.get("label", ""), overrides, record.get("git_commit"))
        if settings is not None and same_settings(wanted, settings, defaults):
            return path
    return None


def budget_seconds(token, extra, commit=None):
    """The ``train_time_budget`` a run of ``token`` with ``--set extra`` is given (its recipe
    files now or at ``commit``), in seconds; none is no limit."""
    budget = extra.get(BUDGET, (recipe_settings(token, commit) or {}).get(BUDGET))
    return float("inf") if budget in (None, "None") else float(budget)


def same_settings(wanted, theirs, defaults):
    """Whether a run given ``theirs`` (at its commit) was given ``wanted``. A property newer
    than that run is one it ran at today's default (new properties default to the old
    behaviour), so it matches only where ``wanted`` keeps that default."""
    for key in wanted.keys() | theirs.keys():
        if key in wanted and key in theirs:
            if wanted[key] != theirs[key]:
                return False
        elif key in wanted and wanted[key] != defaults.get(key):
            return False
    return True


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
