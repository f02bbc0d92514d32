"""Before `sweeps run` starts anything: is the dataset a file uses reachable by the worker?

Looks where worker/engine/datasets.py looks (SWEEPS_DATA_DIR and its sub-folders, the Debian
package's folder, the torchvision download cache), without importing torch.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

from shared.settings import get_settings

# Where the Debian packages dataset-fashion-mnist / dataset-mnist install their files.
SYSTEM_ROOT = Path("/usr/share/datasets")
# Host torchvision downloads (Fashion-)MNIST from; reachable means a download can work.
DOWNLOAD_HOST = ("ossci-datasets.s3.amazonaws.com", 443)
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class Dataset:
    helper: str  # the name the YAML calls
    name: str  # folder / Debian package suffix
    torchvision_dir: str  # torchvision's download layout under its root

    @property
    def system_dir(self) -> Path:
        return SYSTEM_ROOT / self.name


DATASETS = (
    Dataset("fmnist_dataset", "fashion-mnist", "FashionMNIST/raw"),
    Dataset("mnist_dataset", "mnist", "MNIST/raw"),
)
DOWNLOAD_CACHE = Path.home() / ".cache" / "sweeps" / "datasets"


def datasets_used(yaml_text: str) -> list[Dataset]:
    return [d for d in DATASETS if re.search(rf"\b{d.helper}\s*\(", yaml_text)]


def candidate_dirs(dataset: Dataset, data_dir: Path | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs += [data_dir / dataset.name, data_dir / dataset.torchvision_dir, data_dir]
    dirs.append(dataset.system_dir)
    dirs.append((data_dir or DOWNLOAD_CACHE) / dataset.torchvision_dir)
    return dirs


def find_dataset(dataset: Dataset, data_dir: Path | None) -> Path | None:
    for folder in candidate_dirs(dataset, data_dir):
        if all((folder / name).is_file() for name in FILES):
            return folder
    return None


def can_download(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def missing_data_message(yaml_text: str) -> str | None:
    """None when every dataset the file uses is on disk or downloadable; else how to get it."""
    data_dir = get_settings().data_dir
    for dataset in datasets_used(yaml_text):
        if find_dataset(dataset, data_dir) is not None:
            continue
        if can_download():
            continue
        looked = ", ".join(str(p) for p in candidate_dirs(dataset, data_dir))
        return (
            f"{dataset.name} not found (looked in {looked}) and no internet for the torchvision "
            f"download. Get it one of three ways: `sudo apt-get install dataset-{dataset.name}` "
            f"(installs {dataset.system_dir}); or put the four IDX .gz files ({', '.join(FILES)}) "
            f"in a folder and set SWEEPS_DATA_DIR to it; or run once with internet access so "
            f"torchvision downloads them into {(data_dir or DOWNLOAD_CACHE)}."
        )
    return None
