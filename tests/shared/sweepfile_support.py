"""The smallest valid sweep file the spec tests build on (one run with a matrix slug)."""

BASE = """\
experiment_name: exp_${matrix_slug}
model: |
  nn.Linear(4, 2)
train_set: |
  fmnist_dataset(train=True)
batch_size: 8
learnrate: 0.001
optimizer: Adam
max_inputs: 100
"""
