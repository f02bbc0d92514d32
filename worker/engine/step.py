"""One training step, two ways: `EagerStep` (any dataset, any device) and `GraphStep`
(`step_graph: true`, FORMAT.md): the whole step on static buffers, captured once as a CUDA graph.

Both add the step's loss into `loss_sum`, a device scalar the trainer reads only at logging
points, and both advance the scheduler; the trainer reads the learning rate from `lr()`, a host
float, so logging it never reads the device.

GraphStep's step function reads its batch from a static index buffer (`data[idx]`), augments,
runs forward, loss, backward and the optimizer step, and adds the loss into `loss_sum`. On CUDA
it is captured once and replayed; the host only copies the next indices into the buffer. The
learning rate is a device tensor the optimizer reads (capturable AdamW), so the schedule writes
a new value into it between replays without a re-capture. The scheduler itself steps a host-side
shadow optimizer: stepping it on the real, tensor-valued learning rate would read the device
every step. Elsewhere (CPU) the same function runs eagerly on the same buffers, so its logic is
tested without a GPU. A final partial batch runs the same function eagerly on its own tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

Autocast = Callable[[], AbstractContextManager]
WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuBLAS handles, lazy state)


def make_forward_loss(run: Any, autocast: Autocast) -> Callable[..., torch.Tensor]:
    """Input transforms, forward and loss: the part `compile` compiles."""

    def forward_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        for transform in run.transforms:
            x = transform(x)
        with autocast():
            output = run.model(x)
        return run.loss_fn(output.float(), target)

    return forward_loss


class EagerStep:
    """The plain step: forward (compiled when asked, full batches only), backward, update."""

    def __init__(self, run: Any, forward_loss: Callable, compiled: Callable | None,
                 mark_step: bool) -> None:  # fmt: skip
        self.run, self.forward_loss, self.compiled, self.mark_step = (
            run, forward_loss, compiled, mark_step,
        )  # fmt: skip
        device = next(iter(run.model.parameters())).device
        self.loss_sum = torch.zeros((), device=device)
        self.batches = 0  # since the last optimizer step (`gradient_accumulation`)

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> int:
        x, target = batch[0], batch[1]
        s = self.run.settings
        full = self.compiled is not None and len(x) == s.batch_size
        if full and self.mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        loss = (self.compiled if full else self.forward_loss)(x, target)  # type: ignore[misc]
        loss.backward()
        self.batches += 1
        # nn-experiments' rules: the gradients of N batches add up (the loss is not divided),
        # and each gradient value is clipped to +-gradient_clipping before the step.
        if self.batches >= s.gradient_accumulation:
            if s.gradient_clipping is not None:
                torch.nn.utils.clip_grad_value_(self.run.model.parameters(), s.gradient_clipping)
            self.run.optimizer.step()
            self.run.optimizer.zero_grad(set_to_none=True)
            self.batches = 0
        if self.run.scheduler is not None:
            self.run.scheduler.step()
        self.loss_sum += loss.detach().float()
        return len(x)

    def lr(self) -> float:
        return float(self.run.optimizer.param_groups[0]["lr"])


class GraphStep:
    """The whole step on static buffers; captured as one CUDA graph on CUDA (see module doc)."""

    def __init__(self, run: Any, forward_loss: Callable, tensors: tuple[torch.Tensor, ...]):
        self.run, self.forward_loss = run, forward_loss
        self.data, self.targets = tensors[0], tensors[1]
        self.device = self.data.device
        self.batch_size = run.settings.batch_size
        self.idx = torch.zeros(self.batch_size, dtype=torch.long, device=self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        lr = run.optimizer.param_groups[0]["lr"]
        if not isinstance(lr, torch.Tensor):
            raise ValueError("step_graph needs the optimizer built with a tensor learning rate")
        self.lr_tensor = lr
        self.shadow = run.shadow_optimizer  # what the scheduler steps (host floats)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture = self.device.type == "cuda"

    def _step(self, x: torch.Tensor, target: torch.Tensor) -> None:
        loss = self.forward_loss(x, target)
        loss.backward()
        self.run.optimizer.step()
        self.loss_sum += loss.detach().float()

    def _static_step(self) -> None:
        self._step(self.data[self.idx], self.targets[self.idx])

    def __call__(self, idx: torch.Tensor) -> int:
        n = len(idx)
        if n == self.batch_size:
            self.idx.copy_(idx, non_blocking=True)
            if self.capture:
                if self.graph is None:
                    self._capture()
                self.graph.replay()  # type: ignore[union-attr]
            else:
                self._static_step()
                self.run.optimizer.zero_grad(set_to_none=True)
        else:
            # A partial batch: eagerly, on its own tensors. Gradients are accumulated into the
            # graph's static .grad buffers, so they are zeroed in place, not freed.
            self.run.optimizer.zero_grad(set_to_none=self.graph is None)
            self._step(self.data[idx], self.targets[idx])
            self.run.optimizer.zero_grad(set_to_none=self.graph is None)
        self._schedule()
        return n

    def _capture(self) -> None:
        """Warm up on a side stream, then capture one step; the warm-up steps are undone."""
        model, optimizer = self.run.model, self.run.optimizer
        saved = _snapshot(model, optimizer, self.loss_sum)
        rng = torch.cuda.get_rng_state(self.device)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                self._static_step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        # Gradients are allocated by the graph (from None), so its backward writes, not adds.
        optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_step()
        _restore(saved, model, optimizer, self.loss_sum)
        torch.cuda.set_rng_state(rng, self.device)
        self.graph = graph

    def _schedule(self) -> None:
        if self.run.scheduler is not None:
            self.shadow.step()  # a no-op (no gradient) the scheduler expects before its step
            self.run.scheduler.step()
            # A kernel launch with a host scalar: no read back from the device.
            self.lr_tensor.fill_(self.shadow.param_groups[0]["lr"])

    def lr(self) -> float:
        return float(self.shadow.param_groups[0]["lr"])

    def sync_lr(self) -> None:
        """After a resume: the device learning rate from the (restored) schedule."""
        if self.run.scheduler is not None:
            self.shadow.param_groups[0]["lr"] = self.run.scheduler.get_last_lr()[0]
        self.lr_tensor.fill_(self.shadow.param_groups[0]["lr"])


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer, loss_sum: torch.Tensor) -> Any:
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [b.detach().clone() for b in model.buffers()]
    state = {
        id(p): {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
        for p, s in optimizer.state.items()
    }
    return params, buffers, state, loss_sum.clone()


def _restore(saved: Any, model: nn.Module, optimizer: torch.optim.Optimizer,
             loss_sum: torch.Tensor) -> None:  # fmt: skip
    """Copy the snapshot back in place: the graph holds these tensors' addresses."""
    params, buffers, state, loss = saved
    with torch.no_grad():
        for p, v in zip(model.parameters(), params, strict=True):
            p.copy_(v)
        for b, v in zip(model.buffers(), buffers, strict=True):
            b.copy_(v)
        for p, s in optimizer.state.items():
            before = state.get(id(p))
            for k, v in s.items():
                if isinstance(v, torch.Tensor):
                    # State made by the warm-up (the first step) starts from zero.
                    v.copy_(before[k]) if before is not None else v.zero_()
        loss_sum.copy_(loss)
