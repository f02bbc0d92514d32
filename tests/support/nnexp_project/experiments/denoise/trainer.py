import torch

from src.train import Trainer


class TrainDenoising(Trainer):
    """Learns to remove noise: the model sees a noisy image and gives back the clean one."""

    def __init__(self, *args, noise_amount: float = 0.1, second_arg_is_noise: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.noise_amount = noise_amount
        self.second_arg_is_noise = second_arg_is_noise

    def train_step(self, input_batch):
        clean = input_batch[0]
        if self.second_arg_is_noise:
            noisy = input_batch[1]
        else:
            noisy = clean + self.noise_amount * torch.randn_like(clean)
        output = self.model(noisy)
        loss = self.loss_function(output, clean)
        return {"loss": loss, "loss_reconstruction": loss}
