"""Which trainer a name gives with a checkout: read from its files as nn-experiments' loader
resolves it (plain names from the loader's imports, dotted ones from their module), the
checkout's class winning over sweeps' built-in of that name; and what early_stop and search
may use for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.project import Project
from shared.sweepfile import SpecError, parse_sweep
from shared.sweepfile.config_checks import trainer_source


def write(root: Path, files: dict[str, str]) -> Project:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Project(root)


@pytest.fixture
def checkout(tmp_path: Path) -> Project:
    return write(tmp_path, {
        "src/__init__.py": "",
        "src/train/experiment.py": (
            "import torch\nfrom torch.utils.data import DataLoader\n"
            "from src.train import *\nfrom src.models import *\n"
            "try:\n    from experiments.datasets import *\nexcept ImportError:\n    pass\n"
        ),
        "src/train/__init__.py": "from .trainer import *\nfrom .auto import TrainAutoencoder\n",
        "src/train/trainer.py": "import torch\n\n__all__ = ['Trainer']\n\nclass Trainer:\n"
                                "    pass\n\nclass _Hidden:\n    pass\n",
        "src/train/auto.py": "from .trainer import Trainer\n\nclass TrainAutoencoder(Trainer):\n"
                             "    pass\n",
        # a later import of the loader rebinds a name: the last one wins, as in Python
        "src/models/__init__.py": "from torch.nn import Module as TrainAutoencoder\n"
                                  "from .cycle import *\n",
        "src/models/cycle.py": "from src.models import *\nRepresentationClassTrainer = object\n",
        "experiments/reptrainer.py": "from src.train import Trainer as Base\n\n"
                                     "class RepresentationClassTrainer(Base):\n    pass\n",
    })  # fmt: skip


def test_names_resolve_as_the_loader_resolves_them(checkout: Project) -> None:
    assert checkout.defines_trainer("Trainer")  # star import chain, __all__ followed
    assert checkout.defines_trainer("RepresentationClassTrainer")  # through a star cycle
    # the loader's last binding is torch's Module, not the checkout's class
    assert not checkout.defines_trainer("TrainAutoencoder")
    # a dotted name is its module's attribute, wherever the loader's names come from
    assert checkout.defines_trainer("src.train.TrainAutoencoder")
    assert checkout.defines_trainer("experiments.reptrainer.RepresentationClassTrainer")
    for name in ("DataLoader", "torch", "_Hidden", "Nope", "src.train.trainer._Nope",
                 "experiments.trainer.Trainer", "src.models.TrainAutoencoder"):  # fmt: skip
        assert not checkout.defines_trainer(name), name


def test_the_source_of_a_trainer(checkout: Project) -> None:
    def source(config: dict[str, object], project: Project | None = checkout) -> str:
        return trainer_source(config, ("myplugin",), project)

    assert source({}) == "project"  # no `trainer`: the loader's Trainer
    assert source({"trainer": "TrainAutoencoder"}) == "engine"  # not the checkout's
    assert source({"trainer": "src.train.TrainAutoencoder"}) == "project"
    assert source({"trainer": "experiments.trainer.Trainer"}) == "engine"
    assert source({"trainer": "myplugin.Special"}) == "plugin"
    assert source({"trainer": "experiments.denoise.TrainDenoising"}) == "project"
    assert source({}, None) == source({"trainer": "Trainer"}, None) == "engine"


FILE = """\
experiment_name: x
trainer: experiments.reptrainer.RepresentationClassTrainer
train_set: |
  ds
model: |
  m
batch_size: 8
learnrate: 0.01
optimizer: AdamW
max_inputs: 1024
"""


def test_early_stop_and_search_use_what_the_trainer_reports(
    checkout: Project, tmp_path: Path
) -> None:
    early = FILE + "early_stop:\n  metric: accuracy_argmax\n  min_inputs: 256\n"
    search = FILE + "matrix:\n  b: [1, 2]\nsearch:\n  method: grid\n  metric: accuracy_svc\n"
    # sweeps' RepresentationClassTrainer reports accuracies
    bare = Project(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    for text in (early, search):
        assert parse_sweep(text, project=bare).runs
    # the checkout's class of that name: only what every trainer reports is known before it runs
    with pytest.raises(SpecError) as refused:
        parse_sweep(early, project=checkout)
    assert refused.value.key == "early_stop.metric"
    assert refused.value.message == (
        "'early_stop.metric' 'accuracy_argmax' is not a metric the trainer "
        "experiments.reptrainer.RepresentationClassTrainer (your own) reports at each "
        "validation; choose one of validation_loss"
    )
    with pytest.raises(SpecError) as refused:
        parse_sweep(search, project=checkout)
    assert refused.value.key == "search.metric"
    assert (
        "the trainer experiments.reptrainer.RepresentationClassTrainer (your own) reports; "
        "choose one of validation_loss, train_loss" in refused.value.message
    )
    assert parse_sweep(search.replace("accuracy_svc", "train_loss"), project=checkout).runs
