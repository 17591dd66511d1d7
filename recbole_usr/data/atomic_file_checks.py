"""Checks of the ``.inter`` / ``.user`` / ``.item`` atomic files before RecBole reads them.

Why: RecBole hands the files to pandas, which silently reinterprets what it cannot parse
(a row with extra fields shifts its values into the index, a short row gets NaN) and fails
far from the cause on a bad header (``'NoneType' object has no attribute 'index'``).
Here every problem is an error naming the file, the line and the property involved; rows
with the wrong number of fields can instead be dropped (``drop_malformed_rows: True``),
with a warning giving their count, from a cleaned copy that RecBole then reads.
"""

import hashlib
import os
import shutil
from logging import getLogger

from recbole.utils import FeatureType

from recbole_usr.cache_files import atomic_output

FEATURE_TYPES = [ftype.value for ftype in FeatureType]
HEADER_EXAMPLE = "user_id:token<TAB>item_id:token<TAB>timestamp:float"
SHOWN_BAD_ROWS = 3


class MalformedRows:
    """The rows of one file whose field count differs from its header's."""

    def __init__(self, path, n_fields, separator):
        self.path, self.n_fields, self.separator = path, n_fields, separator
        self.lines, self.count, self.total = [], 0, 0

    def add(self, line_number, line):
        self.count += 1
        if len(self.lines) < SHOWN_BAD_ROWS:
            self.lines.append((line_number, line))

    def describe(self):
        shown = "; ".join(
            f"line {number}: {line.count(self.separator) + 1} fields: {line!r}" for number, line in self.lines
        )
        more = f" and {self.count - len(self.lines)} more" if self.count > len(self.lines) else ""
        return f"{self.path}: {self.count} of {self.total} rows do not have the header's {self.n_fields} fields ({shown}{more})"


def files_recbole_reads(config):
    """``(source, path, required fields)`` of the atomic files this run will read."""
    dataset, root = config["dataset"], config["data_path"]
    load_col = config["load_col"]

    def fields_of(source, id_fields):
        if isinstance(load_col, dict):
            if source not in load_col:
                return None  # RecBole skips a source missing from load_col
            if load_col[source] != "*":
                return list(load_col[source])
        return [field for field in id_fields if field]

    order = (config["eval_args"] or {}).get("order")
    inter_ids = [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]] + ([config["TIME_FIELD"]] if order == "TO" else [])
    sources = [
        ("inter", inter_ids),
        ("user", [config["USER_ID_FIELD"]]),
        ("item", [config["ITEM_ID_FIELD"]]),
    ]
    inter_names = [f"{dataset}.{name}.inter" for name in config["benchmark_filename"] or []] or [f"{dataset}.inter"]
    for source, id_fields in sources:
        required = fields_of(source, id_fields)
        if required is None and not (source == "item" and config["text_fields"]):
            continue  # the item text (text_fields) is read from the .item file by the plugin
        for name in inter_names if source == "inter" else [f"{dataset}.{source}"]:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                yield source, path, required or []


def check_header(path, header, required, separator):
    """Raise ValueError unless ``header`` is ``name:type`` columns naming every required field."""
    if not header.strip():
        raise ValueError(
            f"{path} is empty: its first line must be a header such as '{HEADER_EXAMPLE}', then one row per line."
        )
    if header.endswith("\r"):
        raise ValueError(f"{path} has Windows line endings (\\r\\n): convert it to \\n line endings.")
    columns = header.split(separator)
    bad = [column for column in columns if column.count(":") != 1 or column.split(":")[1] not in FEATURE_TYPES]
    if bad:
        first_line = "no header line: its first line" if len(bad) == len(columns) else "a bad header"
        raise ValueError(
            f"{path} has {first_line} is {header!r}. Each header column must be 'name:type' with "
            f"type one of {FEATURE_TYPES} (e.g. '{HEADER_EXAMPLE}'); bad columns: {bad}."
        )
    names = [column.split(":")[0] for column in columns]
    missing = [field for field in required if field not in names]
    if missing:
        raise ValueError(
            f"{path} has no column {missing} (its header names {names}); the properties ask for "
            f"{required} (load_col, USER_ID_FIELD, ITEM_ID_FIELD, TIME_FIELD with order TO). "
            "Rename the header columns or set these properties to the file's names."
        )
    return len(columns)


def scan_file(path, required, separator, encoding):
    """The file's field count per header and its malformed rows (blank lines are skipped, as pandas does)."""
    with open(path, encoding=encoding, newline="\n") as f:
        header = f.readline().rstrip("\n")
        n_fields = check_header(path, header, required, separator)
        bad = MalformedRows(path, n_fields, separator)
        for line_number, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            bad.total += 1
            if line.count(separator) + 1 != n_fields:
                bad.add(line_number, line)
    if bad.total == 0:
        raise ValueError(f"{path} has a header but no rows.")
    return bad


def write_without_malformed_rows(source_path, target_path, n_fields, separator, encoding):
    with atomic_output(target_path) as temporary:
        with open(source_path, encoding=encoding, newline="\n") as src, open(
            temporary, "w", encoding=encoding, newline="\n"
        ) as dst:
            dst.write(src.readline())
            for line in src:
                stripped = line.rstrip("\n")
                if stripped.strip() and stripped.count(separator) + 1 == n_fields:
                    dst.write(stripped + "\n")


def cleaned_copy(config, malformed):
    """A copy of the dataset directory with the malformed rows dropped; returns its path.

    It lives under ``checkpoint_dir`` (``cleaned_datasets/<dataset>-<hash>/``) because
    checkpoints record the data path they were trained on.
    """
    source_dir, dataset = config["data_path"], config["dataset"]
    names = sorted(name for name in os.listdir(source_dir) if os.path.isfile(os.path.join(source_dir, name)))
    digest = hashlib.sha1(os.path.abspath(source_dir).encode())
    for name in names:  # any change to any file of the dataset gives a new copy
        stat = os.stat(os.path.join(source_dir, name))
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target_dir = os.path.join(config["checkpoint_dir"], "cleaned_datasets", f"{dataset}-{digest.hexdigest()[:10]}", dataset)
    os.makedirs(target_dir, exist_ok=True)
    cleaned = {os.path.basename(bad.path): bad for bad in malformed}
    for name in names:
        source, target = os.path.join(source_dir, name), os.path.join(target_dir, name)
        if os.path.exists(target):
            continue
        if name in cleaned:
            write_without_malformed_rows(source, target, cleaned[name].n_fields, config["field_separator"] or "\t",
                                         config["encoding"] or "utf-8")
        else:
            with atomic_output(target) as temporary:
                shutil.copyfile(source, temporary)
    return target_dir


def check_atomic_files(config):
    """Check every atomic file this run reads; returns the ``data_path`` RecBole should read.

    Raises ValueError naming the file (and line) on an empty file, a bad or missing header,
    a header without the fields the properties ask for, or rows with the wrong number of
    fields; with ``drop_malformed_rows: True`` such rows are dropped instead (a warning
    gives their count) and the returned path is a cleaned copy.
    """
    separator = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    malformed = []
    for _, path, required in files_recbole_reads(config):
        bad = scan_file(path, required, separator, encoding)
        if bad.count:
            malformed.append(bad)
    if not malformed:
        return config["data_path"]
    if not config["drop_malformed_rows"]:
        raise ValueError(
            "; ".join(bad.describe() for bad in malformed)
            + ". Fix these lines, or set drop_malformed_rows: True to drop them with a warning."
        )
    target = cleaned_copy(config, malformed)
    for bad in malformed:
        getLogger().warning(f"Dropped malformed rows (drop_malformed_rows: True): {bad.describe()}. Reading {target}.")
    return target
