"""What fastnn knows about each dataset: names, image shape, class names, official files.

Nothing here reads or writes files; the other modules look specs up with `get_spec` at call time
(never at import time), so tests can swap a spec in `DATASETS` with `monkeypatch.setitem`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastnn.data.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    """One official file: where it is published and how to recognise its content.

    `md5` is the md5 of the published file; `content_sha256` (IDX files only) is the sha256 of the
    decompressed content, which stays the same when a distribution re-compresses the file.
    """

    filename: str
    base_url: str
    md5: str
    content_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its canonical `name`, other accepted names, image shape (H, W, C) and classes.

    `layout` is "idx" (Fashion-MNIST's four IDX files) or "cifar" (CIFAR-10 pickled batches or an
    image-folder tree). `subdirs` are the folder/file names probed under a search root, in order
    (the first is `name`, where fetch and import write the decoded cache); `keras_dir` is the
    folder Keras keeps the dataset in; `offline_hint` a further offline source for messages.
    `n_train`/`n_test` are the official split sizes (for messages; fixtures may be smaller).
    """

    name: str
    aliases: tuple[str, ...]
    layout: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    downloads: tuple[RemoteFile, ...]
    subdirs: tuple[str, ...]
    keras_dir: str
    n_train: int
    n_test: int
    offline_hint: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    aliases=("fashion_mnist", "fmnist"),
    layout="idx",
    image_shape=(28, 28, 1),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    downloads=(
        RemoteFile("train-images-idx3-ubyte.gz", FASHION_MNIST_URL, "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        RemoteFile("train-labels-idx1-ubyte.gz", FASHION_MNIST_URL, "25c81989df183df01b3e8a0aad5dffbe",
                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        RemoteFile("t10k-images-idx3-ubyte.gz", FASHION_MNIST_URL, "bef4ecab320f06d8554ea6380940ec79",
                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", FASHION_MNIST_URL, "bb300cfdad3c16e7a12a480ee83cd310",
                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    keras_dir="fashion-mnist",
    n_train=60_000,
    n_test=10_000,
    offline_hint="Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)

CIFAR10 = DatasetSpec(
    name="cifar10",
    aliases=("cifar-10", "cifar_10"),
    layout="cifar",
    image_shape=(32, 32, 3),
    class_names=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
    downloads=(RemoteFile("cifar-10-python.tar.gz", CIFAR10_URL, "c58f30108f718f92721af3b95e74349a"),),
    subdirs=("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-10"),
    keras_dir="cifar-10-batches-py",
    n_train=50_000,
    n_test=10_000,
    offline_hint="an image-folder tree train/<class>/*.png|jpg, test/<class>/* (or its .tar.gz)",
)

DATASETS: dict[str, DatasetSpec] = {FASHION_MNIST.name: FASHION_MNIST, CIFAR10.name: CIFAR10}


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The spec of dataset `name` (canonical name or alias, case-insensitive; a spec is returned
    as is). Raises DataError naming the supported datasets when `name` is unknown.
    """
    if isinstance(name, DatasetSpec):
        return name
    key = str(name).strip().lower()
    for spec in DATASETS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    known = ", ".join(f"{s.name} (aliases: {', '.join(s.aliases)})" for s in DATASETS.values())
    raise DataError(f"Unknown dataset {name!r}. Supported datasets are: {known}.")
