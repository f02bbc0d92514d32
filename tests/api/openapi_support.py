"""The app's OpenAPI document, loaded once for the schemathesis tests, and their bounds."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

BOUNDED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)


def _openapi() -> dict[str, Any]:
    # Building the app touches no database or broker: only its schema is read here.
    from api.main import create_app
    from shared.settings import Settings

    return create_app(Settings()).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
