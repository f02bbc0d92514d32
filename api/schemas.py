"""Response (and request) models: they validate what the API returns and document it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from shared.db.models import SWEEP_NAME_MAX
from shared.domain.metrics import NonFinite


class _Model(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Problem(BaseModel):
    """An error: `detail` is a sentence, or for a bad sweep file the SpecError's fields."""

    detail: str | dict[str, Any] | list[Any]


# Documented, not validated by pydantic: the routes check these themselves, with messages that
# name the problem. A sweep file holds no NUL and no lone UTF-16 surrogate (JSON can escape
# one, UTF-8 cannot encode it); a name no control characters either, and it has a length limit
# (the rule, for the API and the UI alike: shared/domain/submit.py `check_sweep_name`).
NO_NUL = "^[^\\x00\\ud800-\\udfff]*$"
PRINTABLE = "^[^\\x00-\\x1f\\ud800-\\udfff]*$"
# A sweep name's limit, documented on the string itself (as `max_length` would, unchecked).
SweepName = Annotated[str, WithJsonSchema({"type": "string", "maxLength": SWEEP_NAME_MAX})]
EXAMPLE_YAML = """\
matrix:
  lr: [0.1, 0.01]
experiment_name: example/lin_${matrix_slug}
model: |
  nn.Linear(4, 2)
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: 4
learnrate: ${lr}
optimizer: SGD
max_inputs: 64
"""


class SweepSubmission(BaseModel):
    """The JSON form of POST /sweeps and /sweeps/preview."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"yaml": EXAMPLE_YAML, "name": "example"}]},
    )

    yaml: str = Field(
        description="the sweep file's text (nn-experiments YAML)",
        json_schema_extra={"pattern": NO_NUL},
    )
    name: SweepName | None = Field(
        None,
        description="a name for the sweep",
        json_schema_extra={"pattern": PRINTABLE},
    )
    filename: str = Field(
        "sweep.yaml", max_length=500, description="the file's name, for `$extends` paths"
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="other files by name (relative to `filename`): the bases `$extends` names",
    )


class RunBrief(_Model):
    id: int
    matrix_id: str
    slug: str
    status: str
    config_hash: str
    reused_from_id: int | None


class SweepCreated(BaseModel):
    id: int
    name: str
    status: str
    runs: list[RunBrief]
    enqueued: int = Field(description="task messages sent (queued runs)")
    warnings: list[str] = []


class PreviewRun(BaseModel):
    matrix_id: str
    slug: str
    experiment_name: str
    params: dict[str, Any]
    config_hash: str
    would_reuse: bool
    reuse_from_id: int | None = Field(description="the succeeded run whose results it would show")
    link_to_id: int | None = Field(
        None, description="a queued or running run with the same configuration it would wait for"
    )


class SweepPreview(BaseModel):
    name: str
    matrix_keys: list[str]
    search: str | None = Field(
        None,
        description="with `search`: 'tpe, 40 trials over lr ∈ [1e-4, 1e-2] log, ...'; `runs` "
        "are then its first sampled trials",
    )
    runs: list[PreviewRun]
    would_train: int
    would_reuse: int
    merged_yaml: str | None = Field(
        None, description="the file with its `$extends` bases merged in (what a sweep stores)"
    )


class SweepOut(BaseModel):
    id: int
    name: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    run_count: int
    counts: dict[str, int] = Field(description="runs per status")
    progress: float | None = Field(description="inputs seen / max_inputs over the sweep's runs")
    hold_reason: str | None = Field(
        None,
        description="set while the sweep is held: its first runs all failed with the same "
        "error, and its queued runs wait (status `held`) for `POST /sweeps/{id}/retry`",
    )


class SweepPage(BaseModel):
    items: list[SweepOut]
    total: int
    limit: int
    offset: int


class RunSummary(_Model):
    id: int
    matrix_id: str
    slug: str
    experiment_name: str
    status: str
    params: dict[str, Any]
    reused_from_id: int | None
    cancel_requested: bool
    attempts: int
    inputs_seen: int
    max_inputs: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class BestSoFar(BaseModel):
    trial: int = Field(description="1-based, in the order the trials were sampled")
    run_id: int
    value: float | None = Field(description="the trial's metric once it succeeded")
    best: float | None = Field(description="the best value of trials 1..trial")


class SearchOut(BaseModel):
    method: str
    trials: int
    metric: str | None
    mode: str
    in_flight: int
    seed: int
    description: str
    started: int = Field(description="trials started so far")
    best_run_id: int | None
    best_value: float | None
    best_so_far: list[BestSoFar]
    stopped: str | None = Field(
        None, description="why the search could not ask its next trial (e.g. `$filter`)"
    )


class SweepDetail(SweepOut):
    matrix_keys: list[str]
    yaml_text: str
    held_at: datetime | None = None
    search: SearchOut | None = Field(None, description="a sweep with `search`: its trials")
    runs: list[RunSummary] = Field(
        description="one page of runs by id (`limit`, `offset`, `status`); `runs_total` counts "
        "every run that matches"
    )
    runs_total: int
    runs_limit: int
    runs_offset: int


class SweepCancelled(BaseModel):
    sweep_id: int
    cancelled: list[int] = Field(description="queued runs now cancelled")
    cancel_requested: list[int] = Field(description="running runs their workers will stop")


class SweepRetried(BaseModel):
    sweep_id: int
    retried: list[int] = Field(
        description="held, failed, cancelled or pruned runs now queued again"
    )
    refitted: int = Field(0, description="runs given the configuration of the file sent")
    enqueued: int
    warnings: list[str] = []


class MetricPoint(BaseModel):
    step: int
    value: float | None = Field(description="null when NaN or infinite (see `non_finite`)")


class RunDetail(RunSummary):
    sweep_id: int
    config: dict[str, Any]
    config_hash: str
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    worker_host: str | None
    device: str | None
    provenance: dict[str, Any] | None
    traceback: str | None
    created_at: datetime
    enqueued_at: datetime | None
    train_seconds: float | None
    phases: dict[str, float] | None = Field(
        description="where the run's time went, {phase: seconds}: claim, imports, data, build, "
        "train, validation, embed_heldout, checkpoint, svc_wait, total; svc_fit, "
        "svc_fit_heldout and metric_writes run in the background"
    )
    latest: dict[str, MetricPoint] = Field(
        description="newest value per metric key (the source run's, for a reused run)"
    )
    non_finite: dict[str, NonFinite] = Field(
        {},
        description="key -> NaN, Infinity or -Infinity: the `latest` values that are null "
        "because JSON has no such numbers",
    )


class RunCancelOut(_Model):
    id: int
    status: str
    cancel_requested: bool


class MetricSeries(BaseModel):
    run_id: int
    source_run_id: int = Field(description="the run the points belong to (differs when reused)")
    series: dict[str, list[tuple[int, float | None]]] = Field(
        description="key -> [[inputs seen, value], ...] in step order; value null when it is "
        "NaN or infinite (see `non_finite`)"
    )
    last_step: int | None = Field(description="largest step returned; pass as `after` to poll")
    non_finite: dict[str, list[tuple[int, NonFinite]]] = Field(
        {},
        description="key -> [[inputs seen, NaN | Infinity | -Infinity], ...]: the points whose "
        "value is null in `series` (JSON has no NaN or infinity), including any that "
        "`max_points` left out",
    )


class TableColumn(BaseModel):
    name: str
    key: str
    kind: str
    best: str | None
    align: str


class TableRow(BaseModel):
    run_id: int
    sweep_id: int
    matrix_id: str
    slug: str
    status: str
    reused_from_id: int | None
    validation_inputs: int | None
    values: dict[str, Any]
    cells: dict[str, str]
    best: list[str]


class Stat(BaseModel):
    mean: float | None
    std: float | None = Field(description="sample std (ddof=1); null for fewer than 2 values")
    n: int = Field(description="how many values the mean is of")


class AveragedRow(BaseModel):
    """One configuration of an averaged table (`average=trial`)."""

    run_ids: list[int] = Field(description="the runs averaged (finished ones)")
    params: dict[str, Any] = Field(description="the matrix values, the average key left out")
    n: int
    left_out: dict[str, list[int]] = Field(description="status -> runs not averaged")
    validation_inputs: int | None
    values: dict[str, Any]
    stats: dict[str, Stat]
    cells: dict[str, str]
    best: list[str]


class TableOptionsOut(BaseModel):
    include: list[str]
    exclude: list[str]
    sort: list[str]
    average: str | None
    average_std: list[str]


class TableOut(BaseModel):
    columns: list[TableColumn]
    rows: list[TableRow] | list[AveragedRow] = Field(
        description="one page of rows (`limit`, `offset`)"
    )
    sort: str | None = Field(description="the first sort column, if any")
    options: TableOptionsOut | None = None
    average: str | None = Field(default=None, description="the matrix key averaged over")
    std_columns: list[str] | None = None
    total: int = Field(description="rows in the whole table")
    offset: int


class Check(BaseModel):
    ok: bool
    error: str | None = None


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when a dependency is down")
    database: Check
    broker: Check
