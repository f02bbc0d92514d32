"""The malformed-sweep corpus (tests/corpus) against parse_sweep: each file, its error and place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.sweepfile import SpecError, parse_sweep

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
MANIFEST: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "manifest.yaml").read_text())


def test_manifest_and_files_agree() -> None:
    files = {p.name for p in CORPUS.glob("*.yaml")} - {"manifest.yaml"}
    assert files == set(MANIFEST)
    assert len(files) >= 40
    for name, expected in MANIFEST.items():
        assert expected.get("words"), name
        assert expected.get("about"), name


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file_is_refused_with_its_words_and_place(name: str) -> None:
    expected = MANIFEST[name]
    data = (CORPUS / name).read_bytes()
    if expected.get("zero_runs"):
        assert parse_sweep(data).runs == []
        return
    with pytest.raises(SpecError) as err:
        parse_sweep(data)
    for word in expected["words"]:
        assert word in err.value.message, (word, err.value.message)
    for field in ("line", "column", "key", "run"):
        if field in expected:
            assert getattr(err.value, field) == expected[field], (field, err.value.to_dict())
    # every error is a sentence a person can act on, with a location where there is one
    assert len(err.value.message) < 600
    assert str(err.value).endswith(err.value.message)
