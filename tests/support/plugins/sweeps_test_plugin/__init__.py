"""A plugin as a team would write one: a dataset helper and a trainer, used by tests."""

import torch

from worker.engine.trainer import Trainer

__all__ = ["bright_squares", "MarkedLossTrainer"]


def bright_squares(n: int, seed: int = 0) -> torch.utils.data.TensorDataset:
    """n 1x4x4 images and whether their mean is above 0.5, as a one-hot target."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    return torch.utils.data.TensorDataset(x, torch.nn.functional.one_hot(y, 2).float())


class MarkedLossTrainer(Trainer):
    """The plain trainer with 1000 added to its loss, so a test can see that it was used."""

    def prepare(self, run):
        loss_fn = run.loss_fn
        run.loss_fn = lambda output, target: loss_fn(output, target) + 1000.0
        return run
