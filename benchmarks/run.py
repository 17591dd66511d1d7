"""Run the comparisons through the plugin's own CLI and write one JSON per run.

    python -m benchmarks.run --quick                      # ml-100k, 1 epoch, 1 seed (< 20 min on 2 CPU cores)
    python -m benchmarks.run --suite main --datasets Amazon_Beauty --epochs 200 --seeds 2020 2021 2022
    python -m benchmarks.run --suite cost --datasets Amazon_Beauty --epochs 1
    python -m benchmarks.run --modes full --reeval uni99 --epochs 30    # one training, both protocols

Every run is a subprocess of ``run_recbole_usr.py`` (so its peak memory is its own) and
leaves ``benchmarks/results/<suite>-<dataset>-<label>-<mode>-s<seed>-e<epochs>-<settings>.json``
(``<settings>``: a short hash of every property passed and the thread count, so no two settings
share a file) holding the command, seed, machine, wall time, per-epoch training time, metrics
and provenance (:func:`provenance`: ``git describe --always --dirty``, a hash of the
uncommitted diff, package versions; from the run's own process, via ``benchmarks.child``: the
torch thread count and device it used). A failed run leaves its record too, with the error.
``--reeval uni99`` adds the best checkpoint's metrics under 99 sampled negatives.
``python -m benchmarks.report`` turns them into ``benchmarks/RESULTS.md`` and plots.
The device follows RecBole's ``use_gpu`` (a CUDA GPU is used when present).
"""

import argparse
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")

# label -> (model, property overrides). Same split, same evaluator, same run.
MAIN_ROWS = {
    "SASRec (RecBole, CE)": ("SASRec", {}),
    "BERT4Rec (RecBole)": ("BERT4Rec", {}),
    "TIGER (ours)": ("TIGER", {}),
    "SIDDecoder (ours, one pass)": ("SIDDecoder", {}),
    "UnifiedSASRec ID-only": ("UnifiedSASRec", {"use_semantic": False, "id_dim": 64}),
    "UnifiedSASRec semantic-only": ("UnifiedSASRec", {"id_dim": 0}),
    "UnifiedSASRec unified": ("UnifiedSASRec", {}),
    "UnifiedSASRec unified, id_dim 16": ("UnifiedSASRec", {"id_dim": 16}),
}
ABLATIONS = {
    "id_dim": [("UnifiedSASRec", {"id_dim": d, "n_heads": 1 if d in (4, 8, 16, 32) else 2}) for d in (0, 4, 8, 16, 32, 64)],
    "codebook_size": [("UnifiedSASRec", {"rq_codebook_size": k}) for k in (64, 128, 256, 512)],
    "train_mode": [("UnifiedSASRec", {"rq_train_mode": m}) for m in ("end_to_end", "two_stage")],
}
COST_ROWS = {"SASRec (RecBole, CE)": ("SASRec", {}), "UnifiedSASRec unified": ("UnifiedSASRec", {})}
MODES = {"full": {}, "uni99": {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni99"}}}


def machine_name():
    """GPU name when CUDA is used, else the CPU model."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The benchmark's own outputs: rewriting them does not make the code dirty.
OUTPUT_PATHSPECS = [":(exclude)benchmarks/results", ":(exclude)benchmarks/RESULTS.md", ":(exclude)benchmarks/*.png"]
VERSIONED_PACKAGES = ("torch", "numpy", "recbole", "sentence-transformers")


def git(*args, binary=False):
    return subprocess.check_output(["git", *args], cwd=ROOT, text=not binary, stderr=subprocess.DEVNULL)


def git_commit():
    """Short hash of HEAD (see :func:`code_state` for whether the tree matched it)."""
    try:
        return git("rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def code_state():
    """``git_describe`` as ``git describe --always --dirty`` gives it, where dirty means any
    change to tracked files or any untracked, non-ignored file outside the benchmark's own
    outputs; ``git_diff_sha256``: a hash of that change, so two dirty runs can be compared."""
    try:
        describe = git("describe", "--always").strip()
        diff = git("diff", "HEAD", "--binary", "--", ".", *OUTPUT_PATHSPECS, binary=True)
        untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", ".", *OUTPUT_PATHSPECS).split("\0")
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_describe": "unknown", "git_dirty": None}
    digest = hashlib.sha256(diff)
    for path in sorted(filter(None, untracked)):
        digest.update(path.encode())
        with open(os.path.join(ROOT, path), "rb") as f:
            digest.update(f.read())
    dirty = bool(diff) or any(untracked)
    state = {"git_commit": git_commit(), "git_describe": describe + ("-dirty" if dirty else ""), "git_dirty": dirty}
    if dirty:
        state["git_diff_sha256"] = digest.hexdigest()[:16]
    return state


def package_versions():
    """Installed versions of the packages a result depends on."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance():
    """What a record needs to be reproduced: code state, package versions, machine."""
    return {**code_state(), "versions": package_versions(), "machine": machine_name()}


def module_command(module, argv=None):
    """``python -m MODULE ARGS`` as a shell takes it: arguments holding ``=`` or a glob quoted."""
    args = sys.argv[1:] if argv is None else argv
    return f"python -m {module} " + " ".join(a if "=" not in a and "*" not in a else f'"{a}"' for a in args)


def settings_hash(settings):
    """Short hash of a run's settings (every property passed, the model, the thread count)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def slug(text):
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def run_json_command(command, raw, threads=None, env_extra=None, keep_raw=False, timeout=None):
    """Run a command that writes its results as JSON to ``raw``, through ``benchmarks.child``
    (which adds the torch threads, device and versions it ran with); returns a record of the
    run (command, provenance at start, wall time, return code) merged with those results.
    ``timeout`` (seconds): the run is killed past it and its record says so (``timed_out``)."""
    env = dict(os.environ, **(env_extra or {}))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    state = provenance()  # the code the run starts with
    start = time.time()
    try:
        completed = subprocess.run([sys.executable, "-m", "benchmarks.child", raw, *command[1:]], cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else expired.stderr
        completed = subprocess.CompletedProcess(expired.cmd, None, "", f"stopped at the time limit ({timeout:g} s)\n"
                                                + (stderr or "")[-2000:])
    record = {
        "command": " ".join(command[1:]).replace(raw, "RESULTS.json"), **state,
        "threads": threads, "wall_seconds": time.time() - start, "returncode": completed.returncode,
    }
    if completed.returncode is None:
        record["timed_out"] = True
    if code_state().get("git_describe") != state["git_describe"]:
        record["code_changed_during_run"] = True
    if completed.returncode == 0 and os.path.isfile(raw):
        with open(raw) as f:
            record.update(json.load(f))
        if not keep_raw:
            os.unlink(raw)
    else:
        record["error"] = completed.stderr[-3000:] or f"no results file ({completed.returncode})"
        print(f"[benchmarks]   FAILED ({completed.returncode}): {completed.stderr[-500:]}", flush=True)
    return record


def run_one(suite, dataset, label, model, overrides, mode, seed, epochs, extra, threads=None):
    """One training run in its own process; returns the path of its results JSON."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    props = {**overrides, **MODES[mode], "seed": seed, "epochs": epochs, "show_progress": False, **extra}
    settings = {"model": model, "dataset": dataset, "threads": threads,
                **{k: v for k, v in props.items() if k != "seed"}}
    # budgets, seeds and settings never overwrite each other
    name = f"{suite}-{slug(dataset)}-{slug(label)}-{mode}-s{seed}-e{epochs}-{settings_hash(settings)}"
    out = os.path.join(RESULTS_DIR, name + ".json")
    raw = os.path.join(RESULTS_DIR, name + ".raw.tmp")
    command = [sys.executable, "run_recbole_usr.py", f"--model={model}", f"--dataset={dataset}",
               f"--results_file={raw}"] + [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in props.items()]
    print(f"[benchmarks] {label} on {dataset} ({mode}, seed {seed}) ...", flush=True)
    record = {
        "suite": suite, "label": label, "model": model, "dataset": dataset, "mode": mode, "seed": seed,
        "overrides": overrides, "extra": extra, "settings_hash": settings_hash(settings),
        **run_json_command(command, raw, threads),  # the CLI tunes malloc itself, as for any user
    }
    with open(out, "w") as f:
        json.dump(record, f, indent=2, default=float)
    return out


def reevaluate(out, mode, threads=None, keep_done=False):
    """Test the best checkpoint of the run recorded in ``out`` again under ``mode`` (e.g. uni99)
    with ``python -m recbole_usr.evaluate``; the result lands in the record's ``reevaluated``.
    ``keep_done``: leave a record that already has ``mode`` as it is.

    One training then gives both protocols (model selection stays on the run's own valid
    metric), instead of a second training per protocol.
    """
    with open(out) as f:
        record = json.load(f)
    if keep_done and mode in (record.get("reevaluated") or {}):
        return record["reevaluated"][mode]
    model_file = record.get("model_file")
    if not model_file or not os.path.isfile(os.path.join(ROOT, model_file)):
        print(f"[benchmarks]   no checkpoint for {os.path.basename(out)} ({model_file}); not re-evaluated", flush=True)
        return None
    raw = out[: -len(".json")] + f".{mode}.raw.tmp"
    command = [sys.executable, "-m", "recbole_usr.evaluate", f"--model_file={model_file}", f"--eval_mode={mode}",
               f"--results_file={raw}"]
    print(f"[benchmarks]   re-evaluating {record['label']} ({mode}) ...", flush=True)
    entry = run_json_command(command, raw, threads)
    record.setdefault("reevaluated", {})[mode] = entry
    with open(out, "w") as f:
        json.dump(record, f, indent=2, default=float)
    return entry


def plan(args):
    """(suite, label, model, overrides, mode) tuples for the requested suites."""
    runs = []
    if "main" in args.suites:
        for label, (model, overrides) in MAIN_ROWS.items():
            if args.models and model not in args.models:
                continue
            if args.labels and label not in args.labels:
                continue
            for mode in args.modes:
                runs.append(("main", label, model, overrides, mode))
    if "ablation" in args.suites:
        for axis, variants in ABLATIONS.items():
            for model, overrides in variants:
                label = f"{axis}={list(overrides.values())[0]}"
                runs.append((f"ablation_{axis}", label, model, overrides, "full"))
    if "cost" in args.suites:
        for label, (model, overrides) in COST_ROWS.items():
            runs.append(("cost", label, model, {**overrides, "eval_step": 1000}, "full"))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ml-100k, 1 epoch, 1 seed, main/cost/tokenizer suites")
    parser.add_argument("--suites", nargs="+", default=["main"], choices=["main", "ablation", "cost", "tokenizer"])
    parser.add_argument("--datasets", nargs="+", default=["Amazon_Beauty"])
    parser.add_argument("--modes", nargs="+", default=["full", "uni99"], choices=list(MODES))
    parser.add_argument("--models", nargs="+", default=None, help="only these models of the main table")
    parser.add_argument("--labels", nargs="+", default=None, help="only these rows of the main table")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (OMP_NUM_THREADS)")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value properties for every run")
    parser.add_argument("--reeval", nargs="*", default=[], choices=[m for m in MODES if m != "full"],
                        help="after each full-ranking main run, test its best checkpoint again under these modes "
                             "(one training, both protocols)")
    parser.add_argument("--reeval_existing", action="store_true",
                        help="no training: apply --reeval to the existing results of the selected main rows "
                             "whose checkpoints are still in saved/")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)
    if args.quick:  # a smoke run of every suite: ml-100k, 1 epoch, histories cut to 20 items
        args.datasets, args.epochs, args.seeds = ["ml-100k"], 1, args.seeds[:1]
        args.suites = ["main", "cost", "tokenizer"]
        args.modes = ["full"]
        extra.setdefault("MAX_ITEM_LIST_LENGTH", 20)
    if args.reeval_existing:
        for dataset in args.datasets:
            for out in existing_main_results(dataset, args.labels):
                for mode in args.reeval:
                    reevaluate(out, mode, args.threads, keep_done=True)  # delete a record's entry to redo it
        from benchmarks.report import write_report

        print(f"[benchmarks] wrote {write_report()}")
        return
    for dataset in args.datasets:
        if "tokenizer" in args.suites:
            tokenizer_suite(dataset, quick=args.quick, threads=args.threads)
        for seed in args.seeds:
            for suite, label, model, overrides, mode in plan(args):
                epochs = 1 if suite == "cost" and not args.quick else args.epochs
                out = run_one(suite, dataset, label, model, overrides, mode, seed, epochs, extra, args.threads)
                if suite == "main" and mode == "full":
                    for reeval_mode in args.reeval:
                        reevaluate(out, reeval_mode, args.threads)
    from benchmarks.report import write_report

    print(f"[benchmarks] wrote {write_report()}")


def existing_main_results(dataset, labels=None):
    """Result files of full-ranking main runs on ``dataset`` (optionally only ``labels``)."""
    paths = []
    for path in sorted(glob.glob(os.path.join(RESULTS_DIR, f"main-{slug(dataset)}-*-full-*.json"))):
        with open(path) as f:
            record = json.load(f)
        if record.get("dataset") == dataset and (not labels or record.get("label") in labels):
            paths.append(path)
    return paths


def tokenizer_suite(dataset, quick=False, threads=None):
    """Paper Table 1 via ``python -m recbole_usr.tokenize`` (its JSON lands in results/)."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    relative_out = os.path.join("saved", "tokenizer", dataset)
    out_dir = os.path.join(ROOT, relative_out)
    command = [sys.executable, "-m", "recbole_usr.tokenize", f"--dataset={dataset}", f"--tokenizer_output_dir={relative_out}"]
    if quick:
        command.append("--tokenizer_epochs=20")
    print(f"[benchmarks] tokenizer table on {dataset} ...", flush=True)
    stats_file = os.path.join(out_dir, "stats.json")
    if os.path.isfile(stats_file):
        os.unlink(stats_file)  # a failed run must not pick up an old one
    record = {"suite": "tokenizer", "dataset": dataset,
              **run_json_command(command, stats_file, threads, keep_raw=True)}
    record["command"] = "python " + record["command"]
    runtime = {key: record.pop(key) for key in ("torch_threads", "device", "versions") if key in record}
    schemes = {key: record.pop(key) for key in list(record) if key not in RECORD_KEYS}
    record.update(runtime, schemes=schemes)
    with open(os.path.join(RESULTS_DIR, f"tokenizer-{slug(dataset)}.json"), "w") as f:
        json.dump(record, f, indent=2, default=float)


# Keys of run_json_command's record (the rest of a tokenizer record is its statistics).
RECORD_KEYS = {"suite", "dataset", "command", "git_commit", "git_describe", "git_dirty", "git_diff_sha256",
               "versions", "machine", "threads", "wall_seconds", "returncode", "code_changed_during_run", "error",
               "torch_threads", "device"}


if __name__ == "__main__":
    main()
