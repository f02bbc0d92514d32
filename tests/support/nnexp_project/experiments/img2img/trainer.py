import torch

from src.train import Trainer


class TrainImg2Img(Trainer):
    """Input -> target image; `first_arg_is_transforms` makes the input from the target."""

    def __init__(self, *args, first_arg_is_transforms=None, palette=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_arg_transforms = list(first_arg_is_transforms or [])
        self.palette = torch.tensor(palette) if palette is not None else None

    def train_step(self, input_batch):
        target = input_batch[-1]
        source = input_batch[0]
        for transform in self.first_arg_transforms:
            source = transform(source)
        output = self.model(source)
        if self.palette is not None:
            output = output * self.palette.to(output).view(1, -1, 1, 1)
        return self.loss_function(output, target)
