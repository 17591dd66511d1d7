"""Table 1 of arXiv 2502.16474 (semantic-ID quality per RQ lookup scheme), measured twice.

    python -m benchmarks.tokenizer_table --datasets Amazon_Beauty Amazon_Sports_and_Outdoors --seed 2020

For each dataset, ``python -m recbole_usr.tokenize`` runs (through ``benchmarks.child``, so the
torch threads and package versions it ran with are recorded) with two tokenizers:

- ``ours``: the plugin's defaults (k-means initialisation, unused codewords re-seeded between
  pre-training epochs, never after the last);
- ``paper-faithful``: ``--rq_kmeans_init=False --rq_restart_unused=False
  --tokenizer_dead_code_steps=0`` (random initialisation, no restarts at all: the command's own
  per-step dead-code restart, ``tokenizer_dead_code_steps``, is on by default and is not
  covered by ``rq_restart_unused``);
- ``random-init``: ``--rq_kmeans_init=False --rq_restart_unused=False`` alone (random
  initialisation, no restarts between epochs, the per-step dead-code restart still on), to show
  what that one restart does.

Each run fits in, and caches to, its own ``benchmarks/results/tokenizer/<dataset>/<variant>/``
(``semantic_id_cache_dir``: no semantic IDs cached by other runs are reused) and keeps its
``stats.json`` there (its semantic IDs and weights are ignored by git); the table is written to
``benchmarks/results/tokenizer_table.{json,md,png}``, each with the command, code state
(``git describe --always --dirty``, benchmark outputs excluded), seed, torch threads and versions.
"""

import argparse
import json
import os
import sys

from benchmarks.figures import versions_text
from benchmarks.run import RESULTS_DIR, ROOT, run_json_command

VARIANTS = {
    "ours": [],
    "paper-faithful": ["--rq_kmeans_init=False", "--rq_restart_unused=False", "--tokenizer_dead_code_steps=0"],
    "random-init": ["--rq_kmeans_init=False", "--rq_restart_unused=False"],
}
# Only the figures of the paper's Table 1 quoted in issue 13: scheme -> {metric: value}.
PAPER_FIGURES = {
    "cosine": {"unique_coverage": 0.7013},
    "euclidean": {"activation@1": 0.0586},
    "hybrid": {"unique_coverage": 0.8327},
}
PAPER_SOURCE = "arXiv 2502.16474, Table 1"
OUTPUT = os.path.join(RESULTS_DIR, "tokenizer_table")
LINE_STYLES = {"ours": "-", "paper-faithful": "--", "random-init": ":"}


def run_variant(dataset, variant, seed, threads):
    """One tokenize run of a named variant; returns its record."""
    return run_tokenize(dataset, variant, VARIANTS[variant], seed, threads, "tokenizer_table")


def run_tokenize(dataset, name, flags, seed, threads, caller):
    """``recbole_usr.tokenize`` with ``flags`` into its own folder
    ``benchmarks/results/tokenizer/<dataset>/<name>/``; returns its record (run provenance
    plus the command's stats.json)."""
    out_dir = os.path.join("benchmarks", "results", "tokenizer", dataset, name)
    stats_file = os.path.join(ROOT, out_dir, "stats.json")
    if os.path.isfile(stats_file):
        os.unlink(stats_file)  # a failed run must not pick up an old one
    command = [sys.executable, "-m", "recbole_usr.tokenize", f"--dataset={dataset}", f"--seed={seed}",
               "--show_progress=False", f"--tokenizer_output_dir={out_dir}", f"--semantic_id_cache_dir={out_dir}",
               *flags]
    print(f"[{caller}] {dataset} / {name} ...", flush=True)
    record = run_json_command(command, stats_file, threads, keep_raw=True)
    if "error" in record:
        raise RuntimeError(f"{dataset} / {name} failed (exit {record['returncode']}):\n{record['error']}")
    record["command"] = "python " + record["command"]
    return record


def table_rows(records):
    """One row per dataset x scheme: activation per level and unique coverage of each variant."""
    rows = []
    for dataset, by_variant in records.items():
        for scheme in next(iter(by_variant.values()))["schemes"]:
            row = {"dataset": dataset, "scheme": scheme}
            for variant, record in by_variant.items():
                stats = record["schemes"][scheme]
                row[variant] = {**{f"activation@{i + 1}": a for i, a in enumerate(stats["activation"])},
                                "unique_coverage": stats["unique_coverage"]}
            rows.append(row)
    return rows


def provenance_line(info):
    return (f"`{info['command']}` | code {info['git_describe']} | seed {info['seed']} | "
            f"torch threads {info['torch_threads']} | {versions_text(info['versions'])} | {info['machine']}")


def write_markdown(path, rows, info, records):
    metrics = list(rows[0]["ours"])
    names = {m: "unique cov" if m == "unique_coverage" else m.replace("activation", "act") for m in metrics}
    header = ["dataset", "scheme"] + [f"{names[m]} ({variant})" for variant in VARIANTS for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in rows:
        cells = [f"{100 * row[variant][m]:.2f}%" for variant in VARIANTS for m in metrics]
        lines.append("| " + " | ".join([row["dataset"], row["scheme"]] + cells) + " |")
    for scheme, figures in PAPER_FIGURES.items():
        cells = [f"*{100 * figures[m]:.2f}%*" if variant == "paper-faithful" and m in figures else "–"
                 for variant in VARIANTS for m in metrics]
        lines.append("| " + " | ".join([f"*paper ({PAPER_SOURCE})*", f"*{scheme}*"] + cells) + " |")
    runs = [f"- {dataset} / {variant}: `{r['command']}` ({r['wall_seconds']:.0f}s, torch threads "
            f"{r.get('torch_threads')}, {r.get('device')})"
            for dataset, by in records.items() for variant, r in by.items()]
    text = [
        "# Semantic-ID quality per RQ lookup scheme (Table 1 of arXiv 2502.16474)", "",
        "Activation: share of a level's codewords used by at least one item; unique coverage: share of "
        "items whose full code tuple no other item has (no dedup level). *ours*: k-means initialisation, "
        "unused codewords re-seeded between pre-training epochs and after 20 unused steps (never in the "
        "last epoch); *paper-faithful*: `--rq_kmeans_init=False --rq_restart_unused=False "
        "--tokenizer_dead_code_steps=0` (random initialisation, no restarts); *random-init*: the same "
        "without `--tokenizer_dead_code_steps=0` (codewords unused for 20 steps still re-seeded). "
        f"Italic rows: the paper's figures quoted in issue 13 ({PAPER_SOURCE}), placed under the "
        "paper-faithful columns; '–': not quoted.", "",
        *lines, "",
        f"Provenance: {provenance_line(info)}", "", "Runs:", *runs, "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(text))


def write_plot(path, records, info):
    """Sorted codeword usage, a row per dataset, a line per scheme x variant (tokenize's own plot)."""
    from recbole_usr.tokenize import plot_codeword_usage

    usage, styles = {}, {}
    for dataset, by_variant in records.items():
        usage[f"{dataset}: "] = {f"{scheme} ({variant})": stats["codeword_usage"]
                                 for variant, record in by_variant.items()
                                 for scheme, stats in record["schemes"].items()}
        for label in usage[f"{dataset}: "]:
            scheme, variant = label.split(" (")
            styles[label] = {"color": f"C{list(PAPER_FIGURES).index(scheme) if scheme in PAPER_FIGURES else 3}",
                             "linestyle": LINE_STYLES[variant.rstrip(")")], "linewidth": 1}
    title = "Codeword usage per level: ours (solid), paper-faithful (dashed), random-init (dotted)"
    plot_codeword_usage(path, usage, title, footer=provenance_line(info).replace("`", ""), line_styles=styles, dpi=72)
    from PIL import Image  # a 64-colour palette: the committed PNG stays small

    with Image.open(path) as image:
        image = image.convert("RGB").quantize(colors=64)
    image.save(path, optimize=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["Amazon_Beauty", "Amazon_Sports_and_Outdoors"])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.tokenizer_table " + " ".join(sys.argv[1:] if argv is None else argv)
    records = {dataset: {variant: run_variant(dataset, variant, args.seed, args.threads) for variant in VARIANTS}
               for dataset in args.datasets}
    first = next(iter(next(iter(records.values())).values()))
    info = {"command": command.strip(), "seed": args.seed, "git_describe": first["git_describe"],
            "torch_threads": first.get("torch_threads"), "versions": first.get("versions"),
            "machine": first["machine"]}
    rows = table_rows(records)
    with open(OUTPUT + ".json", "w", encoding="utf-8") as f:
        json.dump({**info, "paper": {"source": PAPER_SOURCE, "figures": PAPER_FIGURES}, "rows": rows,
                   "runs": {dataset: {variant: {key: r.get(key) for key in (
                       "command", "git_describe", "git_dirty", "git_diff_sha256", "threads", "torch_threads",
                       "device", "versions", "wall_seconds", "code_changed_during_run")}
                       for variant, r in by.items()} for dataset, by in records.items()}}, f, indent=2)
    write_markdown(OUTPUT + ".md", rows, info, records)
    write_plot(OUTPUT + ".png", records, info)
    print(f"[tokenizer_table] wrote {OUTPUT}.md, .json, .png")


if __name__ == "__main__":
    main()
