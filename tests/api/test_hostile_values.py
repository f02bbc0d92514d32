"""Non-finite and huge values in a sweep file: 422s naming key and line, never a 500."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from api.errors import jsonable

from .conftest import TINY_YAML, post_yaml


@pytest.mark.parametrize(
    ("old", "new", "key", "line", "value"),
    [
        ("max_inputs: 64", "max_inputs: .inf", "max_inputs", 11, "inf"),
        ("max_inputs: 64", "max_inputs: -.inf", "max_inputs", 11, "-inf"),
        ("max_inputs: 64", "max_inputs: .nan", "max_inputs", 11, "nan"),
        ("learnrate: ${lr}", "learnrate: .nan", "learnrate", 9, "nan"),
        ("batch_size: 4", "batch_size: .inf", "batch_size", 8, "inf"),
        ("max_inputs: 64", "max_inputs: " + "9" * 30, "max_inputs", 11,
         "an integer of 30 digits"),
    ],
)  # fmt: skip
def test_bad_number_is_a_422_with_key_line_and_value(
    client: TestClient, old: str, new: str, key: str, line: int, value: str
) -> None:
    response = post_yaml(client, TINY_YAML.replace(old, new))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert (detail["key"], detail["line"], detail["value"]) == (key, line, value)


def test_a_nan_anywhere_in_the_file_is_a_422(client: TestClient) -> None:
    response = post_yaml(client, TINY_YAML + "globals:\n  SCALE: .nan\n")
    assert response.status_code == 422
    assert "'globals' holds the number nan" in response.json()["detail"]["message"]


def test_error_bodies_encode_any_number() -> None:
    huge = 10**5000  # str() of it raises: the encoder must not call it
    body = jsonable({"value": [math.nan, -math.inf, huge, 2**53, 0.5], 3: None})
    assert body == {"value": ["nan", "-inf", "an integer of about 5,001 digits", 2**53, 0.5],
                    "3": None}  # fmt: skip
