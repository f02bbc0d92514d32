"""A Trainer with nn-experiments' API (constructor arguments, train(), the *_step hooks,
log_scalar at num_input_steps, save/load_checkpoint under ./checkpoints/<experiment_name>),
kept small for tests."""

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss, "mse": F.mse_loss}


class Trainer:
    def __init__(
        self,
        experiment_name: str,
        model: torch.nn.Module,
        data_loader: DataLoader,
        validation_loader: Optional[DataLoader] = None,
        freeze_validation_set: bool = False,
        min_loss: Optional[float] = None,
        max_epoch: Optional[int] = None,
        max_inputs: Optional[int] = None,
        optimizers: Iterable[torch.optim.Optimizer] = (),
        schedulers: Iterable = (),
        num_inputs_between_validations: Optional[int] = None,
        num_epochs_between_validations: Optional[int] = None,
        num_inputs_between_checkpoints: Optional[int] = None,
        num_epochs_between_checkpoints: int = 1,
        train_input_transforms: Optional[Iterable[Callable]] = None,
        loss_function: Union[str, Callable] = "l1",
        gradient_clipping: Optional[float] = None,
        gradient_accumulation: int = 1,
        num_train_loss_steps: int = 1000,
        reset: bool = False,
        device: Union[None, str, torch.device] = None,
        hparams: Optional[dict] = None,
        extra_description_values: Optional[dict] = None,
    ):
        self.experiment_name = experiment_name
        self.device = torch.device("cpu" if device in (None, "auto") else device)
        self.model = model.to(self.device)
        self.data_loader = data_loader
        self.validation_loader = validation_loader
        self.max_epoch = max_epoch
        self.max_inputs = max_inputs
        self.min_loss = min_loss
        self.optimizers = list(optimizers)
        self.schedulers = list(schedulers)
        self.num_inputs_between_validations = num_inputs_between_validations
        self.num_epochs_between_validations = num_epochs_between_validations
        self.num_inputs_between_checkpoints = num_inputs_between_checkpoints
        self.train_input_transforms = list(train_input_transforms or [])
        self.loss_function = LOSSES[loss_function] if isinstance(loss_function, str) else loss_function
        self.gradient_clipping = gradient_clipping
        self.gradient_accumulation = gradient_accumulation
        self.num_train_loss_steps = num_train_loss_steps
        self.extra_description_values = extra_description_values
        self.epoch = 0
        self.num_batch_steps = 0
        self.num_input_steps = 0
        self.for_validation = False
        self.tensorboard_path = Path("./runs/") / experiment_name
        self.checkpoint_path = Path("./checkpoints/") / experiment_name
        self._best_validation_loss = None
        self.writer = SummaryWriter(str(self.tensorboard_path))

    # --- overridable steps -----------------------------------------------------------------

    def train_step(self, input_batch):
        input, target = input_batch[0], input_batch[-1]
        if not self.for_validation:
            for transform in self.train_input_transforms:
                input = transform(input)
        return self.loss_function(self.model(input), target)

    def validation_step(self, input_batch):
        return self.train_step(input_batch)

    def write_step(self):
        pass

    # --- logging and checkpoints -----------------------------------------------------------

    def log_scalar(self, tag: str, value):
        self.writer.add_scalar(tag=tag, scalar_value=value, global_step=self.num_input_steps)

    def save_checkpoint(self, name: str = "snapshot"):
        os.makedirs(self.checkpoint_path, exist_ok=True)
        torch.save({
            "state_dict": self.model.state_dict(),
            "epoch": self.epoch,
            "num_batch_steps": self.num_batch_steps,
            "num_input_steps": self.num_input_steps,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }, self.checkpoint_path / f"{name}.pt")

    def load_checkpoint(self, name: str = "snapshot") -> bool:
        filename = self.checkpoint_path / f"{name}.pt"
        if not filename.exists():
            return False
        print(f"loading {filename}")
        data = torch.load(filename)
        self.model.load_state_dict(data["state_dict"])
        self.epoch = data["epoch"] + 1
        self.num_batch_steps = data["num_batch_steps"]
        self.num_input_steps = data["num_input_steps"]
        for optimizer, state in zip(self.optimizers, data["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(self.schedulers, data["schedulers"]):
            scheduler.load_state_dict(state)
        return True

    def save_description(self, name: str = "description"):
        os.makedirs(self.checkpoint_path, exist_ok=True)
        (self.checkpoint_path / f"{name}.json").write_text(json.dumps({
            "experiment_name": self.experiment_name,
            "max_inputs": self.max_inputs,
            "num_inputs": self.num_input_steps,
            **(self.extra_description_values or {}),
        }))

    # --- the loop --------------------------------------------------------------------------

    def train(self):
        self.model.train(True)
        self.running = True
        next_validation = self.num_input_steps + (self.num_inputs_between_validations or 0)
        losses, loss_inputs = [], 0
        while self.running:
            if self.max_epoch is not None and self.epoch >= self.max_epoch:
                break
            for batch_index, batch in enumerate(self.data_loader):
                batch = [b.to(self.device) for b in (batch if isinstance(batch, (list, tuple)) else [batch])]
                loss = self.train_step(batch)
                loss = loss["loss"] if isinstance(loss, dict) else loss
                (loss / self.gradient_accumulation).backward()
                if (batch_index + 1) % self.gradient_accumulation == 0:
                    self._optimizer_step()
                self.num_batch_steps += 1
                self.num_input_steps += batch[0].shape[0]
                losses.append(float(loss.detach()))
                loss_inputs += batch[0].shape[0]
                if loss_inputs >= self.num_train_loss_steps:
                    self.log_scalar("train_loss", sum(losses) / len(losses))
                    for i, scheduler in enumerate(self.schedulers):
                        self.log_scalar(f"learnrate_{i + 1}", scheduler.get_last_lr()[0])
                    losses, loss_inputs = [], 0
                if self.num_inputs_between_validations and self.num_input_steps >= next_validation:
                    next_validation += self.num_inputs_between_validations
                    self.run_validation()
                if self.max_inputs and self.num_input_steps >= self.max_inputs:
                    self.running = False
                    break
            if self.running:
                if self.num_epochs_between_validations and (self.epoch + 1) % self.num_epochs_between_validations == 0:
                    self.run_validation()
                self.save_checkpoint()
                self.epoch += 1
        self.run_validation()
        self.writer.flush()

    def _optimizer_step(self):
        if self.gradient_clipping is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.gradient_clipping)
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad()
        for scheduler in self.schedulers:
            scheduler.step()

    def run_validation(self):
        if self.validation_loader is None:
            return
        self.model.eval()
        self.for_validation = True
        with torch.no_grad():
            values = []
            for batch in self.validation_loader:
                batch = [b.to(self.device) for b in (batch if isinstance(batch, (list, tuple)) else [batch])]
                loss = self.validation_step(batch)
                values.append(float(loss["loss"] if isinstance(loss, dict) else loss))
        self.for_validation = False
        self.model.train(True)
        loss = sum(values) / len(values)
        self.log_scalar("validation_loss", loss)
        if self._best_validation_loss is None or loss < self._best_validation_loss:
            self._best_validation_loss = loss
            self.save_checkpoint("best")
        self.save_checkpoint("snapshot")
        self.write_step()
        if self.min_loss is not None and loss <= self.min_loss:
            self.running = False
