"""Loading runs by top-level key (shared/sweepfile/sections.py) gives exactly what loading each
run's whole substituted file gives, including the errors and their lines."""

from __future__ import annotations

from typing import Any

import pytest

from shared.sweepfile import SpecError, parse
from shared.sweepfile.sections import SectionLoader

BASE = """\
# a comment before the first key: ${hidden}
matrix:
  hidden: [4, 8]
  act: [relu, tanh]
experiment_name: t/${matrix_slug}   # a trailing comment

model: |+
  nn.Sequential(nn.Linear(4, ${hidden}), nn.${act}(), nn.Linear(${hidden}, 2))

# a comment between keys
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: ${hidden}
learnrate: 3e-4
optimizer: SGD
max_inputs: 64
description: >
  folded ${act}
  text
globals: {N: "${hidden}", M: [1, 2]}
"""


def _runs(text: str, *, cut: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not cut:
        monkeypatch.setattr(parse, "SectionLoader", _NoSections)
    try:
        spec = parse.parse_sweep(text)
    except SpecError as error:
        return ("error", str(error), error.line, error.key, error.run)
    finally:
        monkeypatch.undo()
    return [(r.matrix_id, r.config, r.config_hash) for r in spec.runs]


class _NoSections:
    @staticmethod
    def of(_template: str, _budget: object = None) -> None:
        return None


@pytest.mark.parametrize(
    "text",
    [
        BASE,
        BASE.replace("act: [relu, tanh]", "act: ['[', tanh]"),  # opens a bracket: whole text
        BASE.replace("act: [relu, tanh]", "act: ['ReLU\\noptimizer: Adam', tanh]"),
        BASE.replace("max_inputs: 64", "max_inputs: &m 64\nnum_epochs: *m"),  # anchors
        BASE.replace("learnrate: 3e-4", "learnrate: ${act}"),  # an error naming a run
        BASE + "batch_size: 3\n",  # a key given twice: the last wins either way
    ],
    ids=["plain", "bracket", "newline-in-value", "anchors", "error", "duplicate-key"],
)
def test_sections_load_as_the_whole_text_does(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _runs(text, cut=True, monkeypatch=monkeypatch) == _runs(
        text, cut=False, monkeypatch=monkeypatch
    )


def test_files_whose_keys_are_tied_are_not_cut() -> None:
    assert SectionLoader.of("a: &x 1\nb: *x\n") is None
    assert SectionLoader.of("%YAML 1.1\n---\na: 1\n") is None
    assert SectionLoader.of("{a: 1, b: 2}\n") is None
    loader = SectionLoader.of("# c\na: ${x}\nb: |\n  code ${x}\n")
    assert loader is not None
    assert loader.load({"x": 3}) == ("# c\na: 3\nb: |\n  code 3\n", {"a": 3, "b": "code 3\n"})
