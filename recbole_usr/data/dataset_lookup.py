"""Find a dataset's atomic files, so a user never has to copy data by hand.

Order of places looked (first hit wins):
1. ``data_path`` as in RecBole (``<data_path>/<dataset>/<dataset>.inter``), default ``dataset/``;
2. ``dataset/`` of the recbole-usr checkout (when run from elsewhere);
3. ``../shared/datasets`` beside the working directory or beside the checkout;
4. RecBole's own copy inside its wheel (ml-100k);
5. online only: RecBole's download table, under the dataset's RecBole name
   (``Amazon_Beauty`` is ``amazon-beauty`` there).
When none of these has the files, :class:`DatasetNotFoundError` lists every place looked.
"""

import os
import shutil

import recbole
import yaml

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT_ROOT = os.path.dirname(PACKAGE_ROOT)
RECBOLE_EXAMPLES = os.path.join(os.path.dirname(recbole.__file__), "dataset_example")

# Our dataset names -> the names in RecBole's download table (recbole/properties/dataset/url.yaml).
RECBOLE_DOWNLOAD_NAMES = {
    "Amazon_Beauty": "amazon-beauty",
    "Amazon_Sports_and_Outdoors": "amazon-sports-outdoors",
    "Amazon_Toys_and_Games": "amazon-toys-games",
}


class DatasetNotFoundError(FileNotFoundError):
    """No place holds ``<dataset>.inter``; the message says where we looked and what to do."""


def candidate_roots(data_path):
    """Directories that may hold ``<dataset>/<dataset>.inter``, in the order they are tried."""
    roots = [
        data_path,
        os.path.join(CHECKOUT_ROOT, "dataset"),
        os.path.join(os.getcwd(), "..", "shared", "datasets"),
        os.path.join(CHECKOUT_ROOT, "..", "shared", "datasets"),
        RECBOLE_EXAMPLES,
    ]
    unique = []
    for root in roots:
        root = os.path.abspath(root)
        if root not in unique:
            unique.append(root)
    return unique


def has_atomic_files(root, dataset):
    return os.path.isfile(os.path.join(root, dataset, f"{dataset}.inter"))


def recbole_download_url(dataset):
    """RecBole's download URL for ``dataset`` (our name or RecBole's), or None."""
    url_file = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(url_file) as f:
        table = yaml.safe_load(f)
    return table.get(RECBOLE_DOWNLOAD_NAMES.get(dataset, dataset.lower()))


def download_with_recbole(dataset, root, url):
    """Fetch RecBole's processed zip into ``root/dataset`` and name its files after ``dataset``."""
    from recbole.utils.url import download_url, extract_zip

    target = os.path.join(root, dataset)
    existed = os.path.isdir(target)
    try:
        archive = download_url(url, target)
    except Exception:
        if not existed and os.path.isdir(target) and not os.listdir(target):
            os.rmdir(target)  # leave no empty folder behind when offline
        raise
    extract_zip(archive, target)
    os.unlink(archive)
    for name in os.listdir(target):
        stem, ext = os.path.splitext(name)
        if ext in (".inter", ".item", ".user") and stem != dataset:
            shutil.move(os.path.join(target, name), os.path.join(target, dataset + ext))
    return has_atomic_files(root, dataset)


def find_dataset_root(dataset, data_path="dataset/", allow_download=True):
    """Return the directory that holds ``<dataset>/<dataset>.inter`` (RecBole's ``data_path``)."""
    roots = candidate_roots(data_path)
    for root in roots:
        if has_atomic_files(root, dataset):
            return root
    looked = [os.path.join(root, dataset, f"{dataset}.inter") for root in roots]
    url = recbole_download_url(dataset)
    if url is None:
        looked.append(f"RecBole's download table: no entry for '{dataset}'")
    elif not allow_download:
        looked.append(f"RecBole's download table: {url} (download disabled)")
    else:
        try:
            if download_with_recbole(dataset, roots[0], url):
                return roots[0]
            looked.append(f"{url}: the archive holds no {dataset}.inter")
        except Exception as error:  # offline, proxy, HTTP error: all mean "not here"
            looked.append(f"{url}: download failed ({type(error).__name__}: {error})")
    raise DatasetNotFoundError(
        f"Dataset '{dataset}' was not found. Places looked:\n"
        + "\n".join(f"  - {place}" for place in looked)
        + f"\nProvide RecBole atomic files {dataset}.inter (and {dataset}.item with the item text) "
        f"in {os.path.join(roots[0], dataset)}/, or pass --data_path=DIR where DIR/{dataset}/ holds them."
    )
