"""The metric keys the engine reports (worker/engine/__init__.py), named once for every reader.

A point is (key, step, value) with step = training inputs seen. The engine writes these names,
and the tables, charts, the CLI and early stopping read them.
"""

TRAIN_LOSS = "train_loss"
LEARNRATE = "learnrate"
VALIDATION_LOSS = "validation_loss"
ACCURACY_ARGMAX = "accuracy_argmax"
ACCURACY_SVC = "accuracy_svc"
ACCURACY_SVC_HELDOUT = "accuracy_svc_heldout"
MODEL_PARAMS = "model_params"
TRAIN_SECONDS = "train_seconds"
THROUGHPUT = "throughput"

METRIC_KEYS = (
    TRAIN_LOSS,
    LEARNRATE,
    VALIDATION_LOSS,
    ACCURACY_ARGMAX,
    ACCURACY_SVC,
    ACCURACY_SVC_HELDOUT,
    MODEL_PARAMS,
    TRAIN_SECONDS,
    THROUGHPUT,
)
# The learning curves the charts draw.
CURVE_KEYS = (TRAIN_LOSS, VALIDATION_LOSS, ACCURACY_ARGMAX, ACCURACY_SVC, ACCURACY_SVC_HELDOUT)
# Accuracies at the end of a run, most telling first.
ACCURACY_KEYS = (ACCURACY_SVC, ACCURACY_ARGMAX, ACCURACY_SVC_HELDOUT)
