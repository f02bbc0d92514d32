import torch

from .trainer import Trainer


class TrainAutoencoder(Trainer):
    """Gives back its input. `feature_loss_weight` adds the mean size of the code (the output
    of the model's first half) to the loss, to keep the code small; each validation logs the
    code's mean and spread as scalars of their own."""

    def __init__(self, *args, feature_loss_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_loss_weight = feature_loss_weight

    def encode(self, input):
        half = len(self.model) // 2 if isinstance(self.model, torch.nn.Sequential) else 0
        return self.model[:half](input) if half else input

    def train_step(self, input_batch):
        input = input_batch[0]
        loss = self.loss_function(self.model(input), input)
        if self.feature_loss_weight:
            loss = loss + self.feature_loss_weight * self.encode(input).abs().mean()
        return loss

    def write_step(self):
        batch = next(iter(self.validation_loader))
        with torch.no_grad():
            features = self.encode(batch[0].to(self.device))
        self.log_scalar("validation_features_mean", features.mean())
        self.log_scalar("validation_features_std", features.std())
