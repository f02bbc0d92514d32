"""Path and query parameters shared by the JSON routes and the UI, with the bounds they check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from api.errors import InvalidInput

MAX_ID = 2**31 - 1  # ids are INTEGER columns
MAX_IDS = 10_000

SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="sweep id")]
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="run id")]
# For the OpenAPI document: comma-separated ids that `parse_ids` accepts (it also takes spaces,
# leading zeros and ids up to MAX_ID; the pattern stays simple and never promises more).
IDS_PATTERN = f"^[1-9][0-9]{{0,8}}(,[1-9][0-9]{{0,8}}){{0,{MAX_IDS - 1}}}$"


def IdsQuery(**kwargs: Any) -> Any:  # noqa: N802 - used like fastapi.Query
    """A query parameter of ids: the pattern is documented; `parse_ids` checks, with a message."""
    return Query(json_schema_extra={"pattern": IDS_PATTERN, "minLength": 1}, **kwargs)


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
