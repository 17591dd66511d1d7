"""A run's training curves as a PNG beside its results file (``out.json`` -> ``out.png``).

One panel each: validation NDCG@10 per epoch, the training losses per epoch (by the
model's loss names), and, for models with codebook statistics, each level's codebook
activation per epoch, its code churn (share of items whose code at that level changed) in
end-to-end training, and its learned cosine weight with ``rq_distances: learned``; all
read from :func:`recbole_usr.quick_start.run`'s result dict, so a results JSON can be
plotted again later. Matplotlib's Agg canvas is used directly: the process's pyplot
backend is left as it is.
"""

import os

from recbole_usr.cache_files import atomic_output


def plot_path(results_file):
    return os.path.splitext(results_file)[0] + ".png"


def per_level_lines(rows):
    """``{"level i": (epochs, values)}`` from one row of per-level values per epoch."""
    epochs = list(range(len(rows)))
    return {f"level {level + 1}": (epochs, [row[level] for row in rows]) for level in range(len(rows[0]))}


def training_panels(result):
    """``[(title, y label, {line: (epochs, values)})]``, one entry per panel with data."""
    panels = []
    valid, epochs = result.get("valid_results") or [], result.get("valid_epochs") or []
    if valid:
        if all("ndcg@10" in scores for scores in valid):
            panels.append(("validation NDCG@10", "NDCG@10", {"valid": (epochs, [s["ndcg@10"] for s in valid])}))
        else:  # a run whose metrics lack NDCG@10: its own valid_metric
            panels.append(("validation score", "valid_metric", {"valid": (epochs, result["valid_scores"])}))
    losses = result.get("train_losses") or {}
    if losses:
        panels.append(("training losses", "loss (sum over batches)",
                       {name: (list(range(len(values))), values) for name, values in losses.items()}))
    # with rq_end_to_end_restarts the codes in use were assigned right after re-seeding: draw
    # the tokenizer's own assignment before it instead
    natural = result.get("codebook_natural_activation") or []
    activation = natural or result.get("codebook_activation") or []
    if activation:
        title = "codebook activation, before re-seeding" if natural else "codebook activation"
        panels.append((title, "share of codewords used", per_level_lines(activation)))
    churn = result.get("code_churn_by_level") or []  # end to end: codes re-assigned each epoch
    if churn:
        panels.append(("code churn", "share of items whose code changed", per_level_lines(churn)))
    cosine_weight = result.get("codebook_cosine_weight") or []  # rq_distances: learned
    if cosine_weight:
        panels.append(("learned lookup mix", "cosine weight (1 cosine, 0 Euclidean)", per_level_lines(cosine_weight)))
    return panels


def plot_training(result, path):
    """Write the PNG; returns ``{"path", "panels": [title of each drawn axis]}`` (path None
    and no file when the run recorded no epoch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = training_panels(result)
    if not panels:
        return {"path": None, "panels": []}
    figure = Figure(figsize=(4.5 * len(panels), 3.6))
    FigureCanvasAgg(figure)
    for index, (title, ylabel, lines) in enumerate(panels):
        axis = figure.add_subplot(1, len(panels), index + 1)
        for label, (xs, ys) in lines.items():
            axis.plot(xs, ys, marker="o", markersize=3, label=label)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend()
    figure.suptitle(f"{result.get('model', '')} on {result.get('dataset', '')}")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return {"path": path, "panels": [axis.get_title() for axis in figure.axes]}
