"""Item text, read straight from the ``.item`` atomic file.

RecBole splits ``token_seq`` columns into per-word vocabularies and loses the original
strings, so the text is read from the file itself, keyed by the raw item token.
"""

import html
import os

import pandas as pd


def read_item_table(dataset_dir, dataset):
    """The ``.item`` file as strings, columns renamed from ``name:type`` to ``name``."""
    path = os.path.join(dataset_dir, f"{dataset}.item")
    if not os.path.isfile(path):
        return None
    table = pd.read_csv(
        path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding="utf-8"
    )
    table.columns = [column.split(":")[0] for column in table.columns]
    return table


def field_list(text_fields):
    """``text_fields`` as a list: one name given alone (``--text_fields=title``) is that name,
    not the list of its letters."""
    if isinstance(text_fields, str):
        return [text_fields]
    return list(text_fields or [])


def format_item_text(row, text_fields):
    """One string per item: ``field: value; field: value`` over the non-empty fields."""
    parts = []
    for field in text_fields:
        value = html.unescape(str(row.get(field, "") or "")).strip()
        if value:
            parts.append(f"{field.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def item_texts(dataset_dir, dataset, text_fields, item_field="item_id"):
    """``{raw item token: text}`` for every item of the ``.item`` file with some text.

    Raises ValueError naming the missing columns when ``text_fields`` asks for a column the
    file lacks, so a typo in a property file is not silently an empty text.
    """
    text_fields = field_list(text_fields)
    if not text_fields:
        raise ValueError(
            f"No `text_fields` are set for dataset '{dataset}': name the item columns that hold "
            "its text in properties/dataset/<dataset>.yaml or with --text_fields=\"['title']\"."
        )
    table = read_item_table(dataset_dir, dataset)
    if table is None:
        return {}
    missing = [field for field in text_fields if field not in table.columns]
    if missing:
        raise ValueError(
            f"text_fields {missing} are not columns of {dataset}.item "
            f"(its columns: {list(table.columns)})."
        )
    texts = {}
    for row in table.to_dict("records"):
        text = format_item_text(row, text_fields)
        if text:
            texts[row[item_field]] = text
    return texts
