"""The sweep page's table options form and its report download."""

# The fixtures come from tests/api/ui_support.py (imported below), which ruff sees as redefined.
# ruff: noqa: F811

from __future__ import annotations

import io
import json
import zipfile

from fastapi.testclient import TestClient

from tests.api.ui_support import (  # noqa: F401 - fixtures
    logged_in,
    seed_sweep,
    ui_client,
)


def test_sweep_page_averages_and_keeps_the_options_in_its_links(
    logged_in: TestClient, db_url: str
) -> None:
    seeded = seed_sweep(db_url, runs=3)
    params = {"average": "hidden", "average_std": "accuracy (svc)", "exclude": "throughput"}
    page = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}", params=params)
    assert page.status_code == 200, page.text
    assert '<th scope="col">num hiddens</th>' in page.text
    assert '<th scope="col">throughput</th>' not in page.text
    assert " ± " in page.text
    query = "?exclude=throughput&amp;average=hidden&amp;average_std=accuracy+%28svc%29"
    assert f"/ui/sweeps/{seeded.sweep_id}/report.zip{query}" in page.text
    assert f"/ui/sweeps/{seeded.sweep_id}/table.csv{query}" in page.text

    bad = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}", params={"average": "colour"})
    assert bad.status_code == 422 and "cannot average over &#39;colour&#39;" in bad.text
    assert 'id="table-options"' in bad.text  # the form stays, to mend the choice


def test_report_download(logged_in: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url, runs=3)
    url = f"/ui/sweeps/{seeded.sweep_id}/report.zip"
    response = logged_in.get(url, params={"average": "hidden"})
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    from PIL import Image

    with Image.open(io.BytesIO(archive.read("plots/validation_loss.png"))) as image:
        assert json.loads(image.text["Lines"]) == ["all (n=3)"]
    plain = zipfile.ZipFile(io.BytesIO(logged_in.get(url).content))
    with Image.open(io.BytesIO(plain.read("plots/accuracy_svc.png"))) as image:
        assert json.loads(image.text["Lines"]) == seeded.slugs
    logged_in.cookies.clear()
    assert logged_in.get(url).status_code in (303, 401)
