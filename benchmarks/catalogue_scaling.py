"""How time and memory grow with the catalogue: 10k, 100k, 1M items.

    python -m benchmarks.catalogue_scaling [--sizes 10000 100000 1000000] [--users 10000]
                                           [--seed 2020] [--time_limit_s 420]

Per catalogue size, a synthetic RecBole atomic dataset is written to a temporary folder and
four steps run, each in its own process (``benchmarks.run.run_json_command``, so peaks do not
mix and a step past ``--time_limit_s`` is killed and recorded):

* ``tokenizer_fit``: the RQ tokenizer's real fit (``load_or_fit_semantic_ids``: k-means
  initialisation of every level on all items, then ``rq_pretrain_epochs`` epochs, default 2
  here); its artifact is cached for the next steps.
* ``train_epoch_ce`` / ``train_epoch_ss``: one training epoch of UnifiedSASRec through the
  plugin's trainer, full-softmax CE and sampled softmax (SS, 256 negatives). CE is not run
  when its logits alone (positions per batch x items x 4 bytes) would pass the memory limit.
* ``eval_full_top10``: every user's history scored against every item, then top-10.

Synthetic data (seeded): item "text embeddings" are 384-d points on the unit sphere, a
mixture of 1,000 Gaussian clusters (random unit centres, per-item noise N(0, 0.5^2/384) per
coordinate, then normalised), written as the text-embedding cache the normal loading path
reads; users have 5-50 interactions (uniform), items drawn from a Zipf popularity
(p ~ 1/rank, ranks shuffled over item ids). Every item is in the ``.item`` file, so RecBole's
catalogue is the whole catalogue even where an item was never interacted with.

Time is the step's own wall time (dataset loading excluded, reported as ``setup_seconds``);
memory is the process's peak RSS during the step (``VmHWM``, reset at the step's start) and
its growth over the RSS at the start. Writes ``benchmarks/results/catalogue_scaling.{json,md,png}``.
"""

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

from benchmarks.figures import finish_figure, versions_text
from benchmarks.run import RESULTS_DIR, provenance, run_json_command

STEPS = ("tokenizer_fit", "train_epoch_ce", "train_epoch_ss", "eval_full_top10")
DIM = 384
N_CLUSTERS = 1000
MIN_LEN, MAX_LEN = 5, 50
ZIPF_EXPONENT = 1.0
# Properties every step runs with (the model's own defaults otherwise).
SETTINGS = {
    "rq_pretrain_epochs": 2,
    "MAX_ITEM_LIST_LENGTH": MAX_LEN,
    "train_neg_num": 256,
    "epochs": 1,
    "show_progress": False,
    "state": "WARNING",
}
STEP_SETTINGS = {"train_epoch_ce": {"loss_type": "CE"}, "train_epoch_ss": {"loss_type": "SS"}}
SCORE_BYTES = 2 ** 28  # evaluation score matrix per batch: at most 256 MiB of float32


def synthetic_text_embeddings(n_items, seed, dim=DIM, n_clusters=N_CLUSTERS, noise=0.5):
    """``[n_items, dim]`` float32 unit vectors: a seeded mixture of Gaussian clusters on the sphere."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(n_clusters, size=n_items)]
    x += rng.standard_normal((n_items, dim), dtype=np.float32) * (noise / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_sequences(n_items, n_users, seed):
    """``(lengths [n_users], items [sum(lengths)])``: items are 1-based, Zipf-popular."""
    rng = np.random.default_rng(seed + 1)
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=n_users)
    weights = 1.0 / np.arange(1, n_items + 1) ** ZIPF_EXPONENT
    rank_to_item = rng.permutation(n_items) + 1
    items = rank_to_item[rng.choice(n_items, size=int(lengths.sum()), p=weights / weights.sum())]
    return lengths, items


def write_dataset(root, n_items, n_users, seed):
    """Write the atomic files and the text-embedding cache under ``root``; returns the name."""
    from recbole_usr.data.text_embedding import cache_file, cache_meta, file_digest, write_embedding_cache

    name = f"Synth{n_items}"
    directory = os.path.join(root, name)
    os.makedirs(directory, exist_ok=True)
    lengths, items = synthetic_sequences(n_items, n_users, seed)
    users = np.repeat(np.arange(n_users), lengths)
    steps = np.concatenate([np.arange(n) for n in lengths])
    with open(os.path.join(directory, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"u{u}\ti{i}\t{t}\n" for u, i, t in zip(users.tolist(), items.tolist(), steps.tolist()))
    item_file = os.path.join(directory, f"{name}.item")
    with open(item_file, "w") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        f.writelines(f"i{i}\tt{i}\n" for i in range(1, n_items + 1))
    tokens = [f"i{i}" for i in range(1, n_items + 1)]  # the .item file's order, as item_texts reads it
    digest = file_digest(item_file)
    encoder = "all-MiniLM-L6-v2"
    write_embedding_cache(cache_file(directory, name, ["title"], encoder, digest),
                          cache_meta(name, ["title"], encoder, digest), tokens,
                          synthetic_text_embeddings(n_items, seed))
    return name


def dataset_settings(root, name, n_items):
    """Properties locating the synthetic dataset (caches and checkpoints stay under ``root``)."""
    return {
        "data_path": root, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "text_fields": ["title"], "text_cache_dir": os.path.join(root, name),
        "checkpoint_dir": os.path.join(root, "saved"),
        "eval_batch_size": max(1, min(2048, SCORE_BYTES // (4 * (n_items + 1)))),
    }


def rss_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def reset_peak_rss():
    """Reset this process's peak RSS (Linux ``clear_refs``), so a step's peak is its own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


@contextlib.contextmanager
def address_space_limit(limit_mib):
    """Cap new address space at ``limit_mib`` inside (a guard for this machine: an allocation
    past it fails, and the step is recorded as not run, instead of the machine swapping)."""
    if not limit_mib:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int((rss_mib("VmSize") + limit_mib) * 2 ** 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def ce_logits_mib(dataset, batch_size):
    """MiB of one CE logits matrix: real positions per batch (users per batch x mean training
    positions per user; the last two items are validation and test) x items x 4 bytes."""
    counts = np.bincount(dataset.inter_feat[dataset.uid_field].numpy())[1:]
    positions = batch_size * max(float(counts.mean()) - 2, 1.0)
    return positions * dataset.item_num * 4 / 2 ** 20


def measure(step, root, name, seed, memory_limit_mib=None, settings=None):
    """Run one step in this process; returns its measurements (or ``not_run`` with a reason)."""
    import torch
    from recbole.data import data_preparation
    from recbole.utils import get_trainer, init_seed

    from recbole_usr.data.cold_start import create_dataset
    from recbole_usr.data.text_embedding import load_item_text_embeddings
    from recbole_usr.quick_start import build_config, build_model
    from recbole_usr.semantic_id_artifact import cache_dir_of, load_or_fit_semantic_ids, tokenizer_settings, warm_items

    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; use one of {STEPS}")
    start = time.time()
    n_items = int(name[len("Synth"):]) if name.startswith("Synth") else None
    props = {**SETTINGS, **dataset_settings(root, name, n_items or 0), **STEP_SETTINGS.get(step, {}),
             "seed": seed, **(settings or {})}
    config = build_config("UnifiedSASRec", name, config_dict=props)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    record = {"n_items": dataset.item_num - 1, "n_users": dataset.user_num - 1,
              "n_interactions": len(dataset.inter_feat), "settings": props}
    if step == "tokenizer_fit":
        text = load_item_text_embeddings(config, train_data._dataset)
        work = lambda: load_or_fit_semantic_ids(  # noqa: E731  (prepare_semantic_ids' own call)
            tokenizer_settings(config), text, warm_items(train_data._dataset), cache_dir_of(config), config["dataset"])
    else:
        if step == "train_epoch_ce" and memory_limit_mib:
            logits = ce_logits_mib(dataset, config["train_batch_size"])
            record["ce_logits_mib_estimate"] = logits
            if logits > memory_limit_mib:
                return {**record, "not_run": f"one CE logits matrix alone is ~{logits:,.0f} MiB (positions per "
                                             f"batch x items x 4 bytes), over the {memory_limit_mib:,} MiB limit"}
        init_seed(config["seed"], config["reproducibility"])
        model = build_model(config, train_data._dataset)  # semantic IDs: the cache tokenizer_fit left
        if step == "eval_full_top10":
            model.eval()

            def work():
                with torch.no_grad():
                    for batch in test_data:
                        interaction = batch[0]
                        scores = model.full_sort_predict(interaction).view(len(interaction), -1)
                        scores[:, 0] = -torch.inf
                        torch.topk(scores, 10, dim=1)
            record["eval_users"] = len(test_data._dataset) if hasattr(test_data, "_dataset") else None
        else:
            trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
            work = lambda: trainer._train_epoch(train_data, 0, show_progress=False)  # noqa: E731
    record["setup_seconds"] = time.time() - start
    reset_peak_rss()
    rss_start = rss_mib("VmRSS")
    begin = time.time()
    try:
        with address_space_limit(memory_limit_mib):
            work()
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "alloc" not in str(error):
            raise
        return {**record, "not_run": f"out of memory: more than {memory_limit_mib:,} MiB of new address space "
                                     f"after {time.time() - begin:.0f} s ({str(error).splitlines()[0][:160]})"}
    record["seconds"] = time.time() - begin
    record["peak_rss_mib"] = rss_mib("VmHWM")
    record["peak_growth_mib"] = record["peak_rss_mib"] - rss_start
    record["rss_start_mib"] = rss_start
    return record


def run_step(step, root, name, seed, time_limit_s, memory_limit_mib, threads):
    """``measure`` in a fresh process through ``benchmarks.run.run_json_command``."""
    raw = os.path.join(root, f"{step}.json")
    command = [sys.executable, "-m", "benchmarks.catalogue_scaling", "--child", step, "--root", root,
               "--name", name, "--seed", str(seed), "--memory_limit_mib", str(memory_limit_mib), "--out", raw]
    record = run_json_command(command, raw, threads=threads, timeout=time_limit_s)
    record["command"] = record["command"].replace(root, "<tmp>")
    return record


def run_sizes(sizes, users, seed, time_limit_s, memory_limit_mib, threads=1, log=print):
    """Every step on every size; a size whose fit did not finish skips the steps needing it."""
    measurements = []
    for n_items in sizes:
        root = tempfile.mkdtemp(prefix=f"catalogue{n_items}-")
        try:
            begin = time.time()
            name = write_dataset(root, n_items, users, seed)
            log(f"[catalogue] {n_items:,} items: data written in {time.time() - begin:.0f} s")
            fitted = False
            for step in STEPS:
                if step != "tokenizer_fit" and not fitted:
                    record = {"not_run": "the tokenizer fit did not finish at this size"}
                else:
                    record = run_step(step, root, name, seed, time_limit_s, memory_limit_mib, threads)
                    fitted = fitted or (step == "tokenizer_fit" and "seconds" in record)
                record = {"step": step, "size": n_items, **record}
                measurements.append(record)
                log(f"[catalogue] {n_items:,} {step}: " + (
                    f"{record['seconds']:.1f} s, peak {record['peak_rss_mib']:,.0f} MiB" if "seconds" in record
                    else record.get("not_run") or record.get("error", "")[:300]))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return measurements


def status(record):
    if "seconds" in record:
        return None
    if record.get("timed_out"):
        return "time limit"
    if "not_run" in record:
        return "not run"
    return "failed"


def markdown_table(measurements, sizes):
    """Rows = steps, columns = sizes: ``time s / peak MiB`` (or why there is no number)."""
    cell = {(r["step"], r["size"]): r for r in measurements}
    lines = ["| step | " + " | ".join(f"{n:,} items: s / peak MiB" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for step in STEPS:
        cells = []
        for n in sizes:
            record = cell.get((step, n))
            if record is None:
                cells.append("not measured")
            elif status(record) is None:
                cells.append(f"{record['seconds']:,.1f} / {record['peak_rss_mib']:,.0f}")
            else:
                cells.append(status(record))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def footer(meta):
    return f"{meta['command']} | {meta['git_describe']} | {meta['threads']} thread | {versions_text(meta['versions'])}"


def write_outputs(meta, measurements, out_dir=RESULTS_DIR):
    """``catalogue_scaling.json`` (everything), ``.md`` (the table) and ``.png`` (log-log plot)."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, "catalogue_scaling")
    with open(base + ".json", "w") as f:
        json.dump({**meta, "measurements": measurements}, f, indent=2, default=float)
    sizes = meta["sizes"]
    notes = [f"- {r['step']} at {r['size']:,}: {status(r)}: "
             f"{(r.get('not_run') or r.get('error') or '').strip().splitlines()[0][:200] if (r.get('not_run') or r.get('error')) else ''}"
             for r in measurements if status(r)]
    text = [f"# Catalogue scaling\n\n`{meta['command']}` ({meta['git_describe']}, {meta['threads']} thread, "
            f"{meta['machine']}, {meta['wall_seconds']:.0f} s in all)\n", markdown_table(measurements, sizes), "",
            "Time: the step alone (dataset loading excluded); peak MiB: the step's process peak RSS.", *notes]
    with open(base + ".md", "w") as f:
        f.write("\n".join(text) + "\n")
    plot(meta, measurements, base + ".png")


def plot(meta, measurements, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80)
    for step in STEPS:
        done = sorted((r["size"], r["seconds"], r["peak_rss_mib"]) for r in measurements
                      if r["step"] == step and status(r) is None)
        if not done:
            continue
        sizes, seconds, peaks = zip(*done)
        axes[0].plot(sizes, seconds, marker="o", label=step)
        axes[1].plot(sizes, peaks, marker="o", label=step)
    for ax, label in zip(axes, ("seconds", "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("catalogue size (items)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    finish_figure(fig, path, footer(meta))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10000, 100000, 1000000])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--time_limit_s", type=float, default=420, help="per step; a step past it is killed")
    parser.add_argument("--memory_limit_mib", type=int, default=9000,
                        help="per step: CE is not run when its logits alone would pass this, and any "
                             "step is stopped (recorded as not run) when it allocates more")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with open(args.out, "w") as f:
            json.dump(measure(args.child, args.root, args.name, args.seed, args.memory_limit_mib), f, default=float)
        return
    command = "python -m benchmarks.catalogue_scaling " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"command": command.strip(), **provenance(), "threads": 1, "seed": args.seed, "sizes": args.sizes,
            "users": args.users, "time_limit_s": args.time_limit_s, "memory_limit_mib": args.memory_limit_mib,
            "synthetic_data": {"dim": DIM, "clusters": N_CLUSTERS, "lengths": [MIN_LEN, MAX_LEN],
                               "zipf_exponent": ZIPF_EXPONENT}, "settings": SETTINGS}
    begin = time.time()
    measurements = run_sizes(args.sizes, args.users, args.seed, args.time_limit_s, args.memory_limit_mib)
    meta["wall_seconds"] = time.time() - begin
    write_outputs(meta, measurements)
    print(markdown_table(measurements, args.sizes))


if __name__ == "__main__":
    main()
