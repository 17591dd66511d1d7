"""Parameter counting and table initialisation shared by every item representation."""

from torch import nn


def init_id_table(embedding, initializer_range):
    """SASRec's initialisation for an ID table; the padding row stays zero."""
    embedding.weight.data.normal_(mean=0.0, std=initializer_range)
    embedding.weight.data[0].zero_()


def count_parameters(*tensors_or_modules):
    total = 0
    for part in tensors_or_modules:
        if part is None:
            continue
        if isinstance(part, nn.Module):
            total += sum(p.numel() for p in part.parameters())
        else:
            total += part.numel()
    return total


def size_figures(item_embedding, n_items, dim, code_indices=0, training_only=0):
    """The two sizes every representation reports, next to the ID tables it replaces.

    ``serving_size``: what a served model stores (its tables plus each item's code or
    piece indices); ``training_size``: plus what only training holds (RQ encoder / decoder,
    the frozen text-embedding buffer).
    """
    return {"item_embedding": item_embedding, "id_only_64d_table": n_items * 64,
            "id_only_same_width_table": n_items * dim, "serving_size": item_embedding + code_indices,
            "training_size": item_embedding + code_indices + training_only}
