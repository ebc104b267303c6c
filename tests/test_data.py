"""Datasets: the bundled digits (content, split, checksum) and TFDS loading (mock and real)."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tfds_cache

from jaxal import datasets
from jaxal._src import data as data_lib
from jaxal._src.data import tfds_loader


def test_digits_file_content_and_checksum():
  images, labels, is_test = data_lib.digits_raw()
  assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
  assert images.min() == 0 and images.max() == 16
  assert labels.shape == (1797,)
  np.testing.assert_array_equal(
    np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
  )
  digest = hashlib.sha256(images.tobytes() + labels.tobytes() + is_test.tobytes()).hexdigest()
  assert digest == data_lib.DIGITS_SHA256


def test_load_digits_split():
  ds = datasets.load_digits()
  assert ds.name == "digits" and ds.num_classes == 10
  assert ds.x_train.shape == (1347, 8, 8) and ds.x_test.shape == (450, 8, 8)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
  # Stratified: every class has a quarter (rounded) of its images in test.
  counts = np.bincount(ds.y_test, minlength=10)
  np.testing.assert_array_equal(
    counts, np.round(0.25 * np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]))
  )


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(
    ValueError, match="unknown dataset 'imagenet'; valid names are: cifar10, cifar100, digits"
  ):
    datasets.load_dataset("imagenet")


# ---------------------------------------------------------------------------
# load(): names, digits, TFDS through mock data, errors.


def test_names_and_digits_through_load():
  assert {"digits", "mnist", "fashion_mnist", "cifar10", "svhn_cropped"} <= set(datasets.names())
  x, y = datasets.load("digits", "train")
  ref = datasets.load_digits()
  np.testing.assert_array_equal(x, ref.x_train)
  np.testing.assert_array_equal(y, ref.y_train)
  with pytest.raises(ValueError, match="unknown split 'validation' of dataset 'digits'"):
    datasets.load("digits", "validation")


def test_download_takes_numpy_bools_and_refuses_ints():
  x, y = datasets.load("digits", "test", download=np.bool_(False))
  assert x.shape == (450, 8, 8) and y.shape == (450,)
  assert datasets.load_dataset("digits", download=np.bool_(True)).x_train.shape == (1347, 8, 8)
  with pytest.raises(TypeError, match="download must be True or False, got 1 of type int"):
    datasets.load("digits", "train", download=1)
  with pytest.raises(TypeError, match="download must be True or False, got 0 of type int"):
    datasets.load_dataset("mnist", download=0)
  with pytest.raises(TypeError, match="split must be a str .* got 0 of type int"):
    datasets.load("digits", 0)
  with pytest.raises(TypeError, match="dataset name must be a str, got 3 of type int"):
    datasets.load_dataset(3)


def test_unknown_name_lists_tfds_names_too():
  with pytest.raises(
    ValueError, match=r"unknown dataset 'mnsit'; valid names are: .*cifar10.*digits.*mnist"
  ):
    datasets.load("mnsit", "train")
  with pytest.raises(ValueError, match="names no TFDS builder"):
    datasets.load("tfds:", "train")


@pytest.mark.parametrize(
  "name, shape",
  [
    ("mnist", (28, 28, 1)),
    ("fashion_mnist", (28, 28, 1)),
    ("cifar10", (32, 32, 3)),
    ("svhn_cropped", (32, 32, 3)),
  ],
)
def test_tfds_builders_with_mock_data(name, shape, tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=12):
    x, y = datasets.load(name, "train", data_dir=str(tmp_path))
    ds = datasets.load_dataset(name, data_dir=str(tmp_path))
  assert x.shape == (12, *shape) and x.dtype == np.float32
  assert x.min() >= 0.0 and x.max() <= 1.0
  assert y.shape == (12,) and y.dtype == np.int32 and y.min() >= 0 and y.max() < 10
  assert ds.name == name and ds.num_classes == 10
  assert (
    ds.x_train.shape[1:] == shape and ds.x_test.dtype == np.float32 and ds.y_test.dtype == np.int32
  )
  # Mock examples have no prepared files to key on: nothing is kept.
  assert not [d for d, _, _ in os.walk(tmp_path) if tfds_loader.ARRAYS_FOLDER in d]


class _Source:
  """A data source of ``n`` examples that counts the examples it decodes."""

  def __init__(self, images, labels, counter):
    self.images, self.labels, self.counter = images, labels, counter

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    self.counter["decoded"] += 1
    return {"image": self.images[i], "label": self.labels[i]}

  def __getitems__(self, keys):
    return [self[i] for i in keys]


class _Builder:
  """The parts of a prepared ``tfds.core.DatasetBuilder`` that ``tfds_loader.read`` uses."""

  name, version = "toy", "1.0.0"

  def __init__(self, data_path, splits):
    self.data_path, self.splits = data_path, splits
    self.info = type("Info", (), {"supervised_keys": ("image", "label")})()
    self.counter = {"decoded": 0}

  def as_data_source(self, split):
    images, labels = self.splits[split]
    return _Source(images, labels, self.counter)


def _toy_builder(tmp_path):
  rng = np.random.default_rng(0)
  splits = {
    s: (rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8), rng.integers(0, 3, n))
    for s, n in (("train", 9), ("test", 5))
  }
  folder = tmp_path / "toy" / "1.0.0"
  folder.mkdir(parents=True)
  (folder / "dataset_info.json").write_text("{}")
  (folder / "toy-train.array_record-00000-of-00001").write_bytes(b"x" * 10)
  return _Builder(str(folder), splits), folder


def test_decoded_splits_are_kept_and_reread_until_the_prepared_files_change(tmp_path, monkeypatch):
  monkeypatch.delenv(tfds_loader.ARRAYS_ENV, raising=False)
  builder, folder = _toy_builder(tmp_path)
  want_x, want_y = builder.splits["train"]
  x, y = tfds_loader.read(builder, "train")
  np.testing.assert_array_equal(x, want_x)
  np.testing.assert_array_equal(y, want_y)
  assert x.dtype == np.uint8 and y.dtype == np.int32 and builder.counter["decoded"] == 10
  (kept,) = os.listdir(folder / tfds_loader.ARRAYS_FOLDER)
  # Read again: loaded, nothing decoded; another split is decoded and kept apart.
  x2, y2 = tfds_loader.read(builder, "train")
  np.testing.assert_array_equal(x2, want_x)
  np.testing.assert_array_equal(y2, want_y)
  assert y2.dtype == np.int32 and builder.counter["decoded"] == 10
  tfds_loader.read(builder, "test")
  assert builder.counter["decoded"] == 16
  assert len(os.listdir(folder / tfds_loader.ARRAYS_FOLDER)) == 2
  # A prepared file that changes (the dataset prepared anew) is decoded anew.
  builder.splits["train"] = (want_x[::-1].copy(), want_y[::-1].copy())
  (folder / "toy-train.array_record-00000-of-00001").write_bytes(b"y" * 11)
  x3, _ = tfds_loader.read(builder, "train")
  np.testing.assert_array_equal(x3, want_x[::-1])
  assert builder.counter["decoded"] == 26
  # A damaged entry is decoded again and replaced.
  for entry in os.listdir(folder / tfds_loader.ARRAYS_FOLDER):
    (folder / tfds_loader.ARRAYS_FOLDER / entry).write_bytes(b"not arrays")
  x4, _ = tfds_loader.read(builder, "train")
  np.testing.assert_array_equal(x4, want_x[::-1])
  assert builder.counter["decoded"] == 36
  tfds_loader.read(builder, "train")
  assert builder.counter["decoded"] == 36
  # What was kept of the split before it was prepared anew is removed; the other split stays.
  assert kept not in os.listdir(folder / tfds_loader.ARRAYS_FOLDER)
  assert len(os.listdir(folder / tfds_loader.ARRAYS_FOLDER)) == 2


def test_kept_arrays_turned_off_or_unwritable_change_nothing(tmp_path, monkeypatch):
  builder, folder = _toy_builder(tmp_path)
  monkeypatch.setenv(tfds_loader.ARRAYS_ENV, "0")
  for _ in range(2):
    x, _ = tfds_loader.read(builder, "train")
  assert builder.counter["decoded"] == 20 and not (folder / tfds_loader.ARRAYS_FOLDER).exists()
  monkeypatch.delenv(tfds_loader.ARRAYS_ENV)
  (folder / tfds_loader.ARRAYS_FOLDER).write_text("a file where the folder would be")
  for _ in range(2):
    x, _ = tfds_loader.read(builder, "train")
  np.testing.assert_array_equal(x, builder.splits["train"][0])
  assert builder.counter["decoded"] == 40
  assert [e for e in os.listdir(folder) if e.endswith(".tmp")] == []


def test_uint8_images_scale_exactly():
  u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
  f = tfds_loader.to_float_images(u8)
  assert f.shape == (1, 16, 16, 1) and f.dtype == np.float32
  np.testing.assert_array_equal(f[..., 0] * np.float32(255.0), u8.astype(np.float32))
  with pytest.raises(ValueError, match=r"\[num, height, width, channels\]"):
    tfds_loader.to_float_images(np.zeros((2, 3), np.uint8))


def test_unprepared_without_download_says_how_to_use_manual_dir(tmp_path):
  with pytest.raises(
    datasets.DatasetUnavailableError,
    match=r"not prepared .* downloading is off; .*manual_dir=FOLDER.*train-images-idx3-ubyte.gz",
  ):
    datasets.load("mnist", "train", data_dir=str(tmp_path), download=False)


def test_manual_dir_missing_files_are_listed(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "train-images-idx3-ubyte.gz").write_bytes(b"")
  with pytest.raises(
    datasets.DatasetUnavailableError,
    match=r"lacks t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, train-labels",
  ):
    datasets.load("mnist", "test", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
  with pytest.raises(datasets.DatasetUnavailableError, match="is not a folder"):
    datasets.load(
      "mnist", "test", data_dir=str(tmp_path / "data"), manual_dir=str(tmp_path / "nope")
    )


def test_failed_download_says_how_to_use_manual_dir(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds

  def offline(self, *args, **kwargs):
    raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
  with pytest.raises(
    datasets.DatasetUnavailableError,
    match=r"could not prepare dataset 'cifar10' .*ConnectionError.*manual_dir=FOLDER",
  ):
    datasets.load("cifar10", "train", data_dir=str(tmp_path))


def test_missing_tfds_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
  with pytest.raises(ImportError, match=r"pip install 'jaxal\[datasets\]'"):
    datasets.load("mnist", "train")
  datasets.load("digits", "test")  # the bundled dataset never needs it


def test_tfds_is_not_a_runtime_dependency():
  # Importing jaxal and loading digits imports neither tensorflow-datasets nor TensorFlow.
  code = (
    "import sys, jaxal; jaxal.datasets.load_digits(); "
    "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"
  import tomllib

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  runtime = " ".join(project["dependencies"]).lower()
  assert "tensorflow" not in runtime and "importlib" not in runtime
  extra = " ".join(project["optional-dependencies"]["datasets"]).lower()
  for needed in ("tensorflow-datasets", "tensorflow", "importlib_resources", "pillow"):
    assert needed in extra


# ---------------------------------------------------------------------------
# Real MNIST and Fashion-MNIST, prepared from ../shared/data through TFDS's own
# builders, against a direct NumPy parse of the idx files.


def _idx(path: str, header: int) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    return np.frombuffer(f.read()[header:], np.uint8)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_dataset_matches_idx_files(name, shared_data, tmp_path_factory):
  data_dir = tfds_cache.prepared_data_dir(tmp_path_factory, shared_data, name)
  manual = tfds_cache.manual_dir(shared_data, name)
  ds = datasets.load_dataset(name, data_dir=data_dir, download=False)
  assert ds.num_classes == 10
  # Read again: the arrays the first read kept (or the earlier run's) are the same.
  again = datasets.load_dataset(name, data_dir=data_dir, download=False)
  for a, b in ((ds.x_train, again.x_train), (ds.y_test, again.y_test)):
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype
  for split, prefix, n in (("train", "train", 60000), ("test", "t10k", 10000)):
    images = _idx(os.path.join(manual, f"{prefix}-images-idx3-ubyte.gz"), 16).reshape(n, 28, 28, 1)
    labels = _idx(os.path.join(manual, f"{prefix}-labels-idx1-ubyte.gz"), 8).astype(np.int32)
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    # Every pixel is exactly uint8 / 255.
    x8 = np.rint(x * np.float32(255.0)).astype(np.uint8)
    np.testing.assert_array_equal(x, x8.astype(np.float32) / np.float32(255.0))
    # TFDS stores examples in its own (deterministic, hashed) order: compare the
    # (label, image) pairs as sorted byte rows, i.e. pixel for pixel and label
    # for label up to that permutation.
    np.testing.assert_array_equal(_sorted_rows(y, x8), _sorted_rows(labels, images))


def _sorted_rows(labels: np.ndarray, images: np.ndarray) -> np.ndarray:
  n = labels.shape[0]
  rows = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(n, -1)], axis=1)
  rows = np.ascontiguousarray(rows)
  return np.sort(rows.view(f"V{rows.shape[1]}").ravel()).view(np.uint8).reshape(n, -1)


def test_prepared_dataset_reads_without_tensorflow(shared_data, tmp_path_factory):
  data_dir = tfds_cache.prepared_data_dir(tmp_path_factory, shared_data, "mnist")
  # Reading a prepared dataset never imports TensorFlow (so it runs where it is not installed).
  code = (
    "import sys, jaxal\n"
    f"x, y = jaxal.datasets.load('mnist', 'test[:500]', data_dir={data_dir!r}, download=False)\n"
    "print(x.shape, y.shape, 'tensorflow' in sys.modules)"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().splitlines()[-1] == "(500, 28, 28, 1) (500,) False"


# ---------------------------------------------------------------------------
# One's own data: arrays, .npz, CSV/TSV.


def test_from_arrays_splits_by_class_with_a_seed():
  x = np.arange(60.0).reshape(30, 2)
  y = np.repeat([0, 1, 2], 10)
  ds = datasets.from_arrays(x, y, test_fraction=0.3, seed=1)
  assert ds.x_train.shape == (21, 2) and ds.x_test.shape == (9, 2) and ds.num_classes == 3
  assert np.bincount(ds.y_test).tolist() == [3, 3, 3]
  again = datasets.from_arrays(x, y, test_fraction=0.3, seed=1)
  np.testing.assert_array_equal(ds.x_test, again.x_test)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  with pytest.raises(ValueError, match=r"class\(es\) \[2\] .* no example in the training split"):
    datasets.from_arrays(x[:20], y[:20], x[20:], y[20:])
  with pytest.raises(ValueError, match="same length"):
    datasets.from_arrays(x, y[:5])
  with pytest.raises(ValueError, match="NaN or infinite"):
    datasets.from_arrays(np.full((4, 2), np.nan), [0, 1, 0, 1])
  with pytest.raises(ValueError, match="x_test and y_test must be given together"):
    datasets.from_arrays(x, y, x)


def test_from_npz(tmp_path):
  x, y = np.ones((10, 3)), np.arange(10) % 2
  np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
  ds = datasets.from_npz(str(tmp_path / "a.npz"))
  assert ds.x_train.shape == (10, 3) and ds.x_test.shape == (4, 3)
  assert datasets.load_dataset(str(tmp_path / "a.npz")).name == str(tmp_path / "a.npz")
  np.savez(tmp_path / "b.npz", x=x, y_train=y)
  with pytest.raises(ValueError, match=r"lacks x_train; it holds \['x', 'y_train'\]"):
    datasets.from_npz(str(tmp_path / "b.npz"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    datasets.from_npz(str(tmp_path / "c.npz"))


def test_from_csv_and_tsv(tmp_path):
  rows = ["h,w,kind"] + [f"{i},{2 * i + (i % 2)},{'xy'[i % 2]}" for i in range(20)]
  (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
  ds = datasets.from_csv(str(tmp_path / "t.csv"), label_column="kind")
  assert ds.num_classes == 2 and ds.x_train.shape == (16, 2)
  np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)  # standardised on train
  np.testing.assert_allclose(ds.x_train.std(0), 1.0, atol=1e-5)
  by_index = datasets.from_csv(str(tmp_path / "t.csv"), label_column=2)
  np.testing.assert_array_equal(by_index.x_train, ds.x_train)
  (tmp_path / "t.tsv").write_text("\n".join(r.replace(",", "\t") for r in rows) + "\n")
  np.testing.assert_array_equal(datasets.from_csv(str(tmp_path / "t.tsv")).y_test, ds.y_test)
  with pytest.raises(ValueError, match=r"no label column 'label'; its columns are \['h', 'w'"):
    datasets.from_csv(str(tmp_path / "t.csv"), label_column="label")
  (tmp_path / "bad.csv").write_text("a,b,kind\n1,2,x\n1,oops,y\n3,4,x\n")
  with pytest.raises(ValueError, match=r"column 'b' \(row 3\) holds 'oops'"):
    datasets.from_csv(str(tmp_path / "bad.csv"))


def test_tfds_name_with_a_config():
  assert tfds_loader.builder_name("tfds:emnist:letters") == "emnist/letters"
  assert tfds_loader.builder_name("tfds:emnist/letters") == "emnist/letters"
  assert data_lib.check_name("my.npz") == "my.npz"


def test_tabular_tfds_builder_with_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=30):
    ds = datasets.load_dataset("tfds:iris", data_dir=str(tmp_path))
  assert ds.x_train.shape == (30, 4) and ds.x_test.shape == (30, 4) and ds.num_classes == 3
  np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)  # standardised on train
