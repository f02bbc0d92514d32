from .trainer import Trainer
from .train_autoencoder import TrainAutoencoder

__all__ = ["Trainer", "TrainAutoencoder"]
