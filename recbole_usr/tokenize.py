"""``python -m recbole_usr.tokenize --dataset=Amazon_Beauty [--key=value ...]``

Train the RQ tokenizer alone on a dataset's item text embeddings under several distance
schemes (all-cosine, all-Euclidean, the paper's hybrid), and show how good each scheme's
semantic IDs are as IDs: per-level activation and unique coverage, as in Table 1 of
arXiv 2502.16474. Why a separate command: choosing a scheme, or checking that codebooks
do not collapse, should not need a recommender run.

Writes to ``tokenizer_output_dir`` (default ``saved/tokenizer/<dataset>/``):
``semantic_ids.tsv`` (scheme named by ``rq_distances``; ``item_id``, ``code_1..code_L``,
``dedup``), ``rq_tokenizer.pth`` (that scheme's weights), ``stats.json`` (every scheme) and
``codeword_usage.png`` (sorted codeword usage per level, a line per scheme).
Properties: ``properties/tokenizer.yaml`` plus the model's ``rq_*`` / ``semantic_dim``.
Each scheme is fitted and cached exactly as the models' semantic IDs are
(:mod:`recbole_usr.semantic_id_artifact`), with the ``tokenizer_*`` training settings.
"""

import json
import os
import sys
import time

import torch

PROPERTIES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties", "tokenizer.yaml")
FALLBACK_MODEL = "SASRec"
# What RQTokenizer.from_config and its fit read: used by this command whatever --model names.
TOKENIZER_PROPERTIES = ("semantic_dim", "rq_hidden_sizes", "rq_levels", "rq_codebook_size", "rq_distances", "rq_beta",
                        "rq_use_ema", "rq_ema_decay", "rq_dead_code_steps", "rq_dropout", "rq_cosine_codewords",
                        "rq_kmeans_init", "rq_restart_unused")


def config_model(name):
    """The model whose properties shape the tokenizer: ``name`` if it resolves, else SASRec."""
    from recbole_usr.utils import get_model

    try:
        return get_model(name)
    except (ValueError, ImportError):
        return get_model(FALLBACK_MODEL)


def scheme_list(config, n_levels):
    """Scheme name -> per-level distances; the scheme of ``rq_distances`` is always included."""
    from recbole_usr.quantization import resolve_distances, scheme_name

    schemes = {}
    for spec in config["tokenizer_schemes"] or ["cosine", "euclidean", "hybrid"]:
        distances = resolve_distances(spec, n_levels)
        schemes[scheme_name(distances)] = distances
    chosen = resolve_distances(config["rq_distances"] or "hybrid", n_levels)
    schemes.setdefault(scheme_name(chosen), chosen)
    return schemes, scheme_name(chosen)


def train_scheme(config, dataset, text, distances, seed, show_progress):
    """One scheme's semantic-ID artifact (the models' fit and cache, with the ``tokenizer_*``
    training settings); returns (tokenizer, codes [N, L], history)."""
    from recbole_usr.quantization import scheme_name
    from recbole_usr.semantic_id_artifact import cache_dir_of, load_or_fit_semantic_ids, tokenizer_settings
    from recbole_usr.semantic_id_artifact import warm_items

    settings = tokenizer_settings(
        config, rq_distances=distances, rq_dead_code_steps=config["tokenizer_dead_code_steps"],
        rq_pretrain_epochs=config["tokenizer_epochs"], rq_pretrain_batch_size=config["tokenizer_batch_size"],
        rq_pretrain_lr=config["tokenizer_lr"], rq_kmeans_iters=config["tokenizer_kmeans_iters"] or 20, seed=seed,
    )
    artifact = load_or_fit_semantic_ids(settings, text, warm_items(dataset), cache_dir_of(config), config["dataset"],
                                        show_progress, desc=f"RQ tokenizer [{scheme_name(distances)}]")
    return artifact.tokenizer(in_dim=text.shape[1]), artifact.codes[1:], artifact.history


def write_semantic_ids(path, item_tokens, codes_with_dedup):
    """The TSV, written atomically: a consumer never reads a half-written file."""
    from recbole_usr.cache_files import atomic_output

    n_levels = codes_with_dedup.shape[1] - 1
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write("\t".join(["item_id"] + [f"code_{i + 1}" for i in range(n_levels)] + ["dedup"]) + "\n")
        for token, row in zip(item_tokens, codes_with_dedup.tolist()):
            f.write("\t".join([str(token)] + [str(c) for c in row]) + "\n")


def sorted_usage(codes, codebook_size):
    """Per level, items per codeword sorted in decreasing order (what the usage plots draw)."""
    return [torch.bincount(codes[:, level], minlength=codebook_size).sort(descending=True).values.tolist()
            for level in range(codes.shape[1])]


def plot_codeword_usage(path, usage_by_row, title, footer=None, line_styles=None, dpi=120):
    """Sorted codeword usage: a row of panels (one per level) per entry of ``usage_by_row``
    ({row name: {line label: :func:`sorted_usage`}}), a line per label; ``line_styles``:
    optional matplotlib keywords per label; ``footer``: small text under the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_levels = max(len(usage) for lines in usage_by_row.values() for usage in lines.values())
    n_rows = len(usage_by_row)
    fig, axes = plt.subplots(n_rows, n_levels, figsize=(4.5 * n_levels, 3.2 * n_rows + 0.4), squeeze=False)
    for row, (row_name, lines) in zip(axes, usage_by_row.items()):
        for level, ax in enumerate(row):
            for label, usage in lines.items():
                ax.plot(range(1, len(usage[level]) + 1), usage[level], label=label,
                        **(line_styles or {}).get(label, {}))
            ax.set_yscale("symlog", linthresh=1)
            ax.set_xlabel("codeword rank")
            ax.set_title(f"{row_name}level {level + 1}")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("items per codeword")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(title)
    if footer:
        fig.text(0.01, 0.005, footer, fontsize=6, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def run_command(argv=None):
    """Run the comparison; returns a dict with the output paths and every scheme's statistics."""
    from recbole.utils import init_seed

    from recbole_usr.cache_files import atomic_output
    from recbole_usr.cli import parse_args
    from recbole_usr.data.cold_start import create_dataset  # the runs' own: no RecBole pandas warnings
    from recbole_usr.data.text_embedding import load_item_text_embeddings
    from recbole_usr.quantization import append_dedup_level, codebook_statistics, degenerate_code_warnings
    from recbole_usr.quantization import format_stats_table
    from recbole_usr.quick_start import build_config
    from recbole_usr.utils import check_results_file, write_results

    args, config_files, overrides = parse_args(argv)
    check_results_file(args.results_file)
    model = config_model(args.model)
    config = build_config(model, args.dataset, [PROPERTIES_FILE] + list(config_files or []), overrides,
                          used_properties=TOKENIZER_PROPERTIES)
    seed = config["tokenizer_seed"] if config["tokenizer_seed"] is not None else config["seed"]
    init_seed(seed, config["reproducibility"])
    show_progress = bool(config["show_progress"])
    out_dir = config["tokenizer_output_dir"] or os.path.join("saved", "tokenizer", config["dataset"])
    os.makedirs(out_dir, exist_ok=True)

    start = time.time()
    dataset = create_dataset(config)
    full_text = load_item_text_embeddings(config, dataset)
    text = full_text[1:]  # row 0 is padding
    item_tokens = list(dataset.field2id_token[dataset.iid_field][1:])
    prep_seconds = time.time() - start
    print(f"{config['dataset']}: {text.shape[0]} items, text embeddings {text.shape[1]}-d ({prep_seconds:.1f}s)")

    n_levels = int(config["rq_levels"] or 3)
    schemes, chosen = scheme_list(config, n_levels)
    codebook_size = int(config["rq_codebook_size"] or 256)
    results, codes_by_scheme, chosen_tokenizer = {}, {}, None
    for scheme, distances in schemes.items():
        start = time.time()
        tokenizer, codes, history = train_scheme(config, dataset, full_text, distances, seed, show_progress)
        stats = codebook_statistics(codes, codebook_size)
        stats.update(distances=distances, seconds=time.time() - start, final_losses=history[-1] if history else {},
                     codeword_usage=sorted_usage(codes, codebook_size), cosine_weight=tokenizer.cosine_weights())
        results[scheme], codes_by_scheme[scheme] = stats, codes
        if scheme == chosen:
            chosen_tokenizer = tokenizer
        learned = "" if stats["cosine_weight"] is None else (
            ", learned cosine weight per level " + " / ".join(f"{w:.2f}" for w in stats["cosine_weight"]))
        print(f"{scheme}: unique coverage {100 * stats['unique_coverage']:.2f}%{learned} ({stats['seconds']:.1f}s)")

    table = format_stats_table(results)
    print(f"\nSemantic IDs of {config['dataset']} ({text.shape[0]} items, L={n_levels}, K={codebook_size}):")
    print(table)

    paths = {
        "semantic_ids": os.path.join(out_dir, "semantic_ids.tsv"),
        "tokenizer": os.path.join(out_dir, "rq_tokenizer.pth"),
        "stats": os.path.join(out_dir, "stats.json"),
        "plot": os.path.join(out_dir, "codeword_usage.png"),
    }
    warnings = degenerate_code_warnings(results[chosen], config["min_unique_coverage"], f"scheme {chosen}")
    write_semantic_ids(paths["semantic_ids"], item_tokens, append_dedup_level(codes_by_scheme[chosen]))
    with atomic_output(paths["tokenizer"]) as temporary:
        torch.save(chosen_tokenizer.state_dict(), temporary)
    summary = {
        "dataset": config["dataset"],
        "n_items": int(text.shape[0]),
        "embedding_dim": int(text.shape[1]),
        "chosen_scheme": chosen,
        "seed": int(seed),
        "tokenizer": {key: config[key] for key in ("semantic_dim", "rq_hidden_sizes", "rq_levels",
                                                  "rq_codebook_size", "rq_beta", "rq_use_ema",
                                                  "rq_cosine_codewords", "tokenizer_epochs",
                                                  "tokenizer_batch_size", "tokenizer_lr",
                                                  "tokenizer_kmeans_iters", "tokenizer_dead_code_steps")},
        "schemes": results,
        "table": table,
        "warnings": warnings,
    }
    with atomic_output(paths["stats"]) as temporary, open(temporary, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    plot_codeword_usage(paths["plot"], {"": {scheme: stats["codeword_usage"] for scheme, stats in results.items()}},
                        f"{config['dataset']}: codeword usage per level")
    print("\n" + "\n".join(f"{name}: {path}" for name, path in paths.items()))
    result = {"paths": paths, "schemes": results, "chosen_scheme": chosen, "table": table, "warnings": warnings}
    write_results(args.results_file, result, os.path.join(out_dir, "results.json"))
    return result


def main(argv=None):
    """The ``recbole_usr_tokenize`` console script: exit status 0 on success."""
    from recbole_usr.utils import run_console_script

    return run_console_script(run_command, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
