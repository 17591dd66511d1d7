"""``item_repr: id``: a plain ID table (RecBole's SASRec): memorises, cannot generalise."""

from torch import nn

from recbole_usr.config_values import config_value
from recbole_usr.model.item_representations.parameters import init_id_table, size_figures


class IDItemEmbedding(nn.Module):
    def __init__(self, n_items, dim, initializer_range=0.02):
        super().__init__()
        self.dim = dim
        self.embedding = nn.Embedding(n_items, dim, padding_idx=0)
        init_id_table(self.embedding, initializer_range)

    @classmethod
    def from_config(cls, config, dataset):
        return cls(dataset.item_num, config_value(config, "hidden_size", 64),
                   config_value(config, "initializer_range", 0.02))

    def forward(self):
        return self.embedding.weight, {}

    def describe(self):
        size = self.embedding.weight.numel()
        return {"id_table": size, **size_figures(size, self.embedding.num_embeddings, self.dim)}

    def epoch_statistics(self):
        return {}
