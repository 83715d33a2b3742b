import dataclasses
import math

import pytest

from textvae.schedules import KLSchedule, epochs_to_steps


def test_constant():
    schedule = KLSchedule(kind="constant", max_beta=0.7)
    assert schedule(0) == schedule(10**9) == 0.7


def test_linear_rises_then_holds():
    schedule = KLSchedule(kind="linear", min_beta=0.2, max_beta=1.0, warmup_steps=100)
    assert schedule(0) == pytest.approx(0.2)
    assert schedule(50) == pytest.approx(0.6)
    assert schedule(100) == schedule(5000) == 1.0
    assert KLSchedule(kind="linear", warmup_steps=0)(0) == 1.0


def test_logistic_is_bowman_timbmg():
    schedule = KLSchedule(kind="logistic", max_beta=1.0, logistic_k=0.0025, logistic_midpoint=2500)
    assert schedule(2500) == pytest.approx(0.5)
    for step in (0, 1000, 4000, 10_000):
        assert schedule(step) == pytest.approx(1 / (1 + math.exp(-0.0025 * (step - 2500))))
    assert KLSchedule(kind="logistic", max_beta=0.4)(2500) == pytest.approx(0.2)
    assert KLSchedule(kind="logistic", logistic_k=1.0, logistic_midpoint=10**6)(0) == 0.0  # no overflow


def test_cyclical_fu_et_al():
    schedule = KLSchedule(kind="cyclical", total_steps=1000, cycles=4, cycle_ratio=0.5, max_beta=1.0)
    # period 250: rise over steps [0, 125), hold at max over [125, 250)
    for start in (0, 250, 500, 750):
        assert schedule(start) == 0.0
        assert schedule(start + 62.5) == pytest.approx(0.5)
        assert schedule(start + 125) == 1.0
        assert schedule(start + 249) == 1.0
    assert schedule(1000) == schedule(10**6) == 1.0
    assert KLSchedule(kind="cyclical", total_steps=100, cycles=1, cycle_ratio=1.0, min_beta=0.5)(
        50
    ) == pytest.approx(0.75)


def test_steps_to_max_and_epochs_to_steps():
    assert epochs_to_steps(2, 150) == 300
    assert epochs_to_steps(0.5, 3) == 2
    assert epochs_to_steps(1, 10, accumulate_grad_batches=4) == 3
    linear = KLSchedule(kind="linear", warmup_steps=epochs_to_steps(2, 150))
    assert linear.steps_to_max(tolerance=0.01) == 297
    assert linear(297) >= 0.99
    logistic = KLSchedule(kind="logistic")
    step = logistic.steps_to_max(tolerance=0.01)
    assert logistic(step) >= 0.99 > logistic(step - 1)
    assert KLSchedule(kind="constant").steps_to_max() == 0
    assert KLSchedule(kind="cyclical", total_steps=1000, cycles=4).steps_to_max(tolerance=0.2) == 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "sigmoid"},
        {"min_beta": 0.5, "max_beta": 0.1},
        {"min_beta": -0.1},
        {"kind": "linear", "warmup_steps": -1},
        {"kind": "logistic", "logistic_k": 0.0},
        {"kind": "cyclical"},  # total_steps missing
        {"kind": "cyclical", "total_steps": 100, "cycles": 0},
        {"kind": "cyclical", "total_steps": 100, "cycle_ratio": 0.0},
        {"kind": "cyclical", "total_steps": 100, "cycle_ratio": 1.5},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        KLSchedule(**kwargs)


def test_negative_step_raises_and_schedule_is_frozen():
    schedule = KLSchedule(kind="linear", warmup_steps=10)
    with pytest.raises(ValueError):
        schedule(-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.max_beta = 2.0  # type: ignore[misc]
