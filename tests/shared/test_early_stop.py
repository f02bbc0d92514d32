"""early_stop: validation at submit, the successive-halving rule, and the rule on stored curves."""

from __future__ import annotations

import math

import pytest
from sqlalchemy.orm import Session

from shared.db.models import Metric
from shared.db.pruning import PRUNED_AT_KEY, prune_state, rung_values
from shared.domain.runs import judge_rung
from shared.sweepfile import SpecError, parse_sweep
from shared.sweepfile.early_stop import EarlyStop
from tests.shared.sweepfile_support import BASE
from tests.support.db import insert_runs

EARLY = """\
max_inputs: 10_000
early_stop:
  metric: validation_loss
  min_inputs: 1_000
"""


def _with(extra: str) -> str:
    return BASE.replace("max_inputs: 100\n", extra)


def test_early_stop_is_parsed_with_defaults_and_left_out_of_the_hash() -> None:
    (run,) = parse_sweep(_with(EARLY)).runs
    rule = EarlyStop.from_config(run.config)
    assert rule == EarlyStop("validation_loss", "min", 1_000, 3)
    (plain,) = parse_sweep(_with("max_inputs: 10_000\n")).runs
    assert run.config_hash == plain.config_hash


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("  patience: 3\n", "early_stop.patience", "unknown key 'early_stop.patience'"),
        ("  mode: lowest\n", "early_stop.mode", "min or max"),
        ("  reduction_factor: 1\n", "early_stop.reduction_factor", ">= 2"),
    ],
)
def test_bad_early_stop_keys_are_named_with_their_line(extra: str, key: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_sweep(_with(EARLY + extra))
    assert caught.value.key == key
    assert words in caught.value.message
    assert caught.value.line == len(_with(EARLY).splitlines()) + 1


def test_a_metric_the_trainer_does_not_report_is_refused() -> None:
    text = _with(EARLY.replace("validation_loss", "accuracy_argmax"))
    with pytest.raises(SpecError) as caught:
        parse_sweep(text)
    assert caught.value.key == "early_stop.metric"
    assert "trainer Trainer reports" in caught.value.message
    assert caught.value.line == text.splitlines().index("  metric: accuracy_argmax") + 1
    # The representation trainer reports argmax accuracy, but the SVC only later.
    rep = text + "trainer: RepresentationClassTrainer\n"
    assert EarlyStop.from_config(parse_sweep(rep).runs[0].config).mode == "max"  # type: ignore[union-attr]
    with pytest.raises(SpecError, match="too late"):
        parse_sweep(rep.replace("accuracy_argmax", "accuracy_svc"))


def test_min_inputs_must_be_given_and_below_max_inputs() -> None:
    with pytest.raises(SpecError, match="'early_stop.min_inputs' must be an integer"):
        parse_sweep(_with(EARLY.replace("  min_inputs: 1_000\n", "")))
    with pytest.raises(SpecError, match="must be below max_inputs"):
        parse_sweep(_with(EARLY.replace("1_000", "10_000")))
    with pytest.raises(SpecError, match="must be a map"):
        parse_sweep(_with("max_inputs: 100\nearly_stop: asha\n"))


def test_rungs_and_the_promotion_rule() -> None:
    rule = EarlyStop("validation_loss", "min", 1_000, 3)
    assert [rule.rung_of(s) for s in (999, 1_000, 2_999, 3_000, 9_000)] == [None, 0, 0, 1, 2]
    assert rule.promotes(5.0, [5.0])  # the first to reach a rung goes on
    assert not rule.promotes(5.0, [1.0, 5.0])  # fewer than 3: only the best so far
    assert rule.promotes(1.0, [1.0, 5.0])
    six = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # top 1/3 of six: the best two
    assert [rule.promotes(v, six) for v in six] == [True, True, False, False, False, False]
    assert not rule.promotes(math.nan, [math.nan])  # a diverged run never goes on
    high = EarlyStop("accuracy_argmax", "max", 1_000, 2)
    assert [high.promotes(v, [0.2, 0.9, 0.5, 0.7]) for v in (0.9, 0.7, 0.5)] == [
        True, True, False,
    ]  # fmt: skip


def _curve(session: Session, run_id: int, points: list[tuple[int, float]]) -> None:
    session.add_all(Metric(run_id=run_id, key="validation_loss", step=s, value=v)
                    for s, v in points)  # fmt: skip
    session.commit()


def test_rule_reads_the_sweeps_stored_curves(session: Session) -> None:
    a, b, c, d = insert_runs(session, [{"max_inputs": 10_000}] * 4)
    (other,) = insert_runs(session, [{"max_inputs": 10_000}], name="another sweep")
    sweep_id = prune_state(session, a).sweep_id
    # Validations every 700 inputs: the value at the 1,000 rung is the one at 1,400.
    _curve(session, a, [(700, 0.9), (1_400, 0.5), (2_100, 0.4)])
    _curve(session, b, [(700, 0.8), (1_400, 0.3)])
    _curve(session, other, [(1_400, 0.01)])  # another sweep: not a competitor
    assert rung_values(session, sweep_id, "validation_loss", 1_000) == {a: 0.5, b: 0.3}
    rule = EarlyStop("validation_loss", "min", 1_000, 3)
    # c at 0.2 is the best of three: goes on; d at 0.6 is not: pruned, and marked so.
    assert judge_rung(session, c, sweep_id, rule, 0, 0.2) is None
    reason = judge_rung(session, d, sweep_id, rule, 0, 0.6)
    session.commit()
    # c's point is not stored (judged only): the competitors are a, b and d itself.
    assert reason is not None and "rung of 1,000 inputs" in reason and "of the 3 runs" in reason
    assert prune_state(session, d).was_pruned and not prune_state(session, c).was_pruned
    marks = session.query(Metric).filter_by(run_id=d, key=PRUNED_AT_KEY).all()
    assert [(m.step, m.value) for m in marks] == [(1_000, 1_000.0)]
