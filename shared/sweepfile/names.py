"""Names the engine supports, kept here without importing torch (a worker test checks them)."""

from shared import metric_keys as mk

KNOWN_KEYS = {
    "matrix": "the parameter matrix",
    "experiment_name": "run name, usually with ${matrix_slug}",
    "globals": "names visible to all code of the run",
    "model": "code giving an nn.Module",
    "train_set": "code giving the training Dataset",
    "validation_set": "code giving the validation Dataset",
    "trainer": "trainer class name",
    "batch_size": "training batch size",
    "learnrate": "learning rate",
    "optimizer": "a torch.optim class name",
    "scheduler": "a torch.optim.lr_scheduler class name",
    "loss_function": "loss name or code",
    "max_inputs": "stop after this many training samples",
    "train_input_transforms": "code giving a list of batch transforms",
    "freeze_validation_set": "validate on a cached copy of the batches",
    "validation_batch_size": "validation batch size",
    "num_epochs_between_validations": "validate every N epochs",
    "num_inputs_between_validations": "also validate every N inputs",
    "max_epoch": "stop after this many epochs",
    "seed": "seed torch, numpy and random",
    "num_workers": "DataLoader workers",
    "gradient_clipping": "clip each gradient value to +-this before the optimizer step",
    "gradient_accumulation": "step the optimizer every N batches",
    "dataloader_collate_fn": "code giving the DataLoader's collate function",
    "load": "start the model from the weights of a checkpoint file or folder",
    # sweeps' own switches (off by default so the seed's numbers stay comparable)
    "precision": "fp32 (default) or bf16 autocast",
    "compile": "torch.compile the model",
    "step_graph": "the whole training step as one CUDA graph",
    "description": "free text shown with the sweep",
    "early_stop": "stop runs early by successive halving (metric, mode, min_inputs, ...)",
    "search": "sample the matrix: method, trials, metric, mode, in_flight, seed",
}
REQUIRED_KEYS = ("experiment_name", "model", "train_set", "batch_size", "learnrate", "optimizer")
# Keys whose value is always Python code (`model`, `train_set*`, `validation_set*`); other keys
# only when the string spans lines, except our free-text `description`.
ALWAYS_CODE_KEYS = ("model",)
ALWAYS_CODE_PREFIXES = ("train_set", "validation_set")
NEVER_CODE_KEYS = ("description",)

TRAINERS = (
    "Trainer",
    "RepresentationClassTrainer",
    "experiments.reptrainer.RepresentationClassTrainer",
    "experiments.trainer.Trainer",
    "TrainAutoencoder",
    "src.train.TrainAutoencoder",
    "src.train.train_autoencoder.TrainAutoencoder",
)
# The metrics each trainer reports at every validation (early_stop compares one of them).
_LOSS = (mk.VALIDATION_LOSS,)
_CLASSIFY = (mk.VALIDATION_LOSS, mk.ACCURACY_ARGMAX)
TRAINER_METRICS = {
    "Trainer": _LOSS,
    "experiments.trainer.Trainer": _LOSS,
    "RepresentationClassTrainer": _CLASSIFY,
    "experiments.reptrainer.RepresentationClassTrainer": _CLASSIFY,
    "TrainAutoencoder": _LOSS,
    "src.train.TrainAutoencoder": _LOSS,
    "src.train.train_autoencoder.TrainAutoencoder": _LOSS,
}
# Every metric each trainer reports (a search can learn from any of them); a plugin's trainer
# is known only to the workers, so only what every trainer reports is accepted for it.
BASE_REPORTS = (mk.VALIDATION_LOSS, mk.TRAIN_LOSS, mk.MODEL_PARAMS, mk.TRAIN_SECONDS, mk.THROUGHPUT)
_CLASSIFY_REPORTS = (
    *BASE_REPORTS[:1],
    mk.ACCURACY_ARGMAX,
    mk.ACCURACY_SVC,
    mk.ACCURACY_SVC_HELDOUT,
    *BASE_REPORTS[1:],
)
TRAINER_REPORTS = {
    name: _CLASSIFY_REPORTS if mk.ACCURACY_ARGMAX in metrics else BASE_REPORTS
    for name, metrics in TRAINER_METRICS.items()
}
OPTIMIZERS = (
    "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax",
    "LBFGS", "NAdam", "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam",
)  # fmt: skip
# Schedulers whose second positional argument is a length, as the engine builds them.
SCHEDULERS = ("CosineAnnealingLR", "CosineAnnealingWarmRestarts", "StepLR", "PolynomialLR")
LOSS_ALIASES = {
    "l1": "L1Loss",
    "mae": "L1Loss",
    "l2": "MSELoss",
    "mse": "MSELoss",
    "ce": "CrossEntropyLoss",
    "cross_entropy": "CrossEntropyLoss",
    "bce": "BCELoss",
    "binary_cross_entropy": "BCELoss",
    "kl_div": "KLDivLoss",
}
LOSS_FUNCTIONS = (
    "l1_loss", "mse_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "smooth_l1_loss", "huber_loss", "soft_margin_loss",
    "multilabel_soft_margin_loss", "multi_margin_loss", "poisson_nll_loss",
)  # fmt: skip
LOSS_CLASSES = (
    "L1Loss", "MSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss",
    "KLDivLoss", "SmoothL1Loss", "HuberLoss", "SoftMarginLoss", "MultiLabelSoftMarginLoss",
    "MultiMarginLoss", "PoissonNLLLoss",
)  # fmt: skip
PRECISIONS = ("fp32", "bf16")
