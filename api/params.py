"""Path and query parameters shared by the JSON routes and the UI, with the bounds they check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from api.errors import InvalidInput

MAX_ID = 2**31 - 1  # ids are INTEGER columns
MAX_IDS = 10_000

SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="sweep id")]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]
# What `parse_ids` accepts, for the OpenAPI document: ids separated by commas.
IDS_PATTERN = r"^\s*[0-9]+\s*(,\s*[0-9]+\s*)*$"


def parse_ids(text: str | None, what: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3] in order, without repeats; 422 naming the bad item otherwise."""
    if not text:
        return []
    ids = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or not 1 <= int(item) <= MAX_ID:
            why = "not a number" if not item.isdigit() else f"not between 1 and {MAX_ID}"
            raise InvalidInput(
                f"{what} must be comma-separated ids like 1,2,3; got {item[:40]!r} ({why})"
            )
        ids.append(int(item))
    if len(ids) > MAX_IDS:
        raise InvalidInput(f"at most {MAX_IDS:,} {what} per request")
    return list(dict.fromkeys(ids))
