"""Where ``find_dataset_root`` looks for ``<name>/<name>.inter``, in which order, and what it
says when nothing is found."""

import os
import urllib.error

import pytest
import recbole
import yaml

from conftest import write_tiny_dataset
from recbole_usr.data import dataset_lookup
from recbole_usr.data.dataset_lookup import DatasetNotFoundError, find_dataset_root

RECBOLE_DIR = os.path.dirname(recbole.__file__)
NAME = "LookupData"


def real(path):
    return os.path.realpath(str(path))


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Private stand-ins for every place looked, with the checkout root moved into tmp."""
    checkout = tmp_path / "co" / "checkout"
    cwd = tmp_path / "w" / "proj"
    checkout.mkdir(parents=True)
    cwd.mkdir(parents=True)
    monkeypatch.setattr(dataset_lookup, "CHECKOUT_ROOT", str(checkout))
    monkeypatch.chdir(cwd)
    return {
        "data_path": tmp_path / "dp",
        "checkout_dataset": checkout / "dataset",
        "cwd_shared": tmp_path / "w" / "shared" / "datasets",
        "checkout_shared": tmp_path / "co" / "shared" / "datasets",
    }


def test_lookup_order(places):
    order = ["data_path", "checkout_dataset", "cwd_shared", "checkout_shared"]
    for key in order:
        write_tiny_dataset(places[key], NAME, with_item_file=False)
    for key in order:
        assert real(find_dataset_root(NAME, str(places["data_path"]), allow_download=False)) == real(places[key])
        os.remove(places[key] / NAME / f"{NAME}.inter")
    with pytest.raises(DatasetNotFoundError):
        find_dataset_root(NAME, str(places["data_path"]), allow_download=False)


def test_data_path_wins_over_a_second_place(places):
    write_tiny_dataset(places["data_path"], NAME)
    write_tiny_dataset(places["checkout_dataset"], NAME)
    assert real(find_dataset_root(NAME, str(places["data_path"]))) == real(places["data_path"])


def test_found_only_under_shared_datasets_beside_the_working_directory(places):
    write_tiny_dataset(places["cwd_shared"], NAME)
    # default data_path ("dataset/", relative to the cwd) does not hold it
    assert real(find_dataset_root(NAME)) == real(places["cwd_shared"])


def test_a_folder_without_the_inter_file_does_not_count(places):
    (places["data_path"] / NAME).mkdir(parents=True)
    (places["data_path"] / NAME / f"{NAME}.item").write_text("item_id:token\n")
    write_tiny_dataset(places["checkout_shared"], NAME)
    assert real(find_dataset_root(NAME, str(places["data_path"]))) == real(places["checkout_shared"])


def test_ml_100k_found_in_recbole_wheel(places):
    root = find_dataset_root("ml-100k", str(places["data_path"]), allow_download=False)
    assert real(root) == real(os.path.join(RECBOLE_DIR, "dataset_example"))


def expected_places(places, name):
    roots = [
        places["data_path"],
        places["checkout_dataset"],
        places["cwd_shared"],
        places["checkout_shared"],
        os.path.join(RECBOLE_DIR, "dataset_example"),
    ]
    return [os.path.join(os.path.abspath(str(root)), name, f"{name}.inter") for root in roots]


def test_missing_dataset_error_lists_places_and_remedy(places):
    name = "NoSuchDataset_xyz"
    with pytest.raises(DatasetNotFoundError) as error:
        find_dataset_root(name, str(places["data_path"]), allow_download=False)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    for place in expected_places(places, name):
        assert place in message
    assert f"no entry for '{name}'" in message
    assert f"{name}.inter" in message and f"{name}.item" in message
    assert os.path.join(os.path.abspath(str(places["data_path"])), name) in message
    assert "--data_path" in message


def recbole_url(recbole_name):
    with open(os.path.join(RECBOLE_DIR, "properties", "dataset", "url.yaml")) as f:
        return yaml.safe_load(f)[recbole_name]


def test_known_dataset_with_download_disabled(places):
    with pytest.raises(DatasetNotFoundError) as error:
        find_dataset_root("Amazon_Beauty", str(places["data_path"]), allow_download=False)
    message = str(error.value)
    for place in expected_places(places, "Amazon_Beauty"):
        assert place in message
    assert recbole_url("amazon-beauty") in message
    assert "download disabled" in message


def test_known_dataset_offline_download_failure_is_reported(places, monkeypatch):
    calls = []

    def offline(dataset, root, url):
        calls.append((dataset, root, url))
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(dataset_lookup, "download_with_recbole", offline)
    with pytest.raises(DatasetNotFoundError) as error:
        find_dataset_root("Amazon_Beauty", str(places["data_path"]))
    # downloads go to the first place looked (data_path), from RecBole's table under its own name
    assert calls == [("Amazon_Beauty", os.path.abspath(str(places["data_path"])), recbole_url("amazon-beauty"))]
    message = str(error.value)
    for place in expected_places(places, "Amazon_Beauty"):
        assert place in message
    assert "download failed (URLError" in message
    assert "no network in tests" in message


def test_failed_download_leaves_no_empty_folder(tmp_path, monkeypatch):
    import recbole.utils.url

    def failing_download(url, folder):
        os.makedirs(folder, exist_ok=True)  # as RecBole's download_url does before urlopen
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(recbole.utils.url, "download_url", failing_download)
    with pytest.raises(urllib.error.URLError):
        dataset_lookup.download_with_recbole("Amazon_Beauty", str(tmp_path), "http://example.invalid/x.zip")
    assert not (tmp_path / "Amazon_Beauty").exists()


def test_real_shared_amazon_beauty_is_found(checkout_root):
    shared = checkout_root.parent / "shared" / "datasets"
    if not (shared / "Amazon_Beauty" / "Amazon_Beauty.inter").is_file():
        pytest.skip(f"no shared Amazon_Beauty under {shared} (only present on the project's machines)")
    local = checkout_root / "dataset"
    expected = local if (local / "Amazon_Beauty" / "Amazon_Beauty.inter").is_file() else shared
    # the cwd is an empty tmp dir: neither dataset/ nor ../shared/datasets exist beside it
    assert real(find_dataset_root("Amazon_Beauty", allow_download=False)) == real(expected)


def test_build_config_points_data_path_at_the_found_place(places):
    from recbole_usr.quick_start import build_config

    write_tiny_dataset(places["cwd_shared"], NAME)
    config = build_config("SASRec", NAME)  # RecBole's default data_path "dataset/" does not hold it
    assert real(config["data_path"]) == real(places["cwd_shared"] / NAME)


def test_build_config_missing_dataset_raises(places):
    from recbole_usr.quick_start import build_config

    with pytest.raises(DatasetNotFoundError, match="NoSuchDataset_xyz"):
        build_config("SASRec", "NoSuchDataset_xyz", config_dict={"data_path": str(places["data_path"])},
                     allow_download=False)
