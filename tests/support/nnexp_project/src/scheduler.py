"""Learning-rate schedules looked up before torch's by the experiment loader."""

import math

import torch


class CosineAnnealingWarmupLR(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up over the first `warmup` fraction of the steps, then a cosine to zero."""

    def __init__(self, optimizer, num_steps: int, warmup: float = 0.1):
        warmup_steps = max(1, int(num_steps * warmup))

        def factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            done = (step - warmup_steps) / max(1, num_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

        super().__init__(optimizer, factor)
