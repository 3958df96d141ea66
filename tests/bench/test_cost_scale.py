"""`--cost-scale`: every modelled duration × k, the cost model's shape kept, the floor × k, and
the overhead reported in the default costs' seconds (docs/performance.md, "The costs × 10").

Arithmetic only: no run, no timing.
"""

from __future__ import annotations

import math

import attrs
import pytest

from benchmarks import costmodel, run, seed

DURATIONS = ("http_exchange", "module_import", "get_cmdlet", "set_cmdlet", "get_per_row")


@pytest.mark.parametrize("name", list(costmodel.PROFILES))
def test_every_duration_scales_and_the_shape_stays(name: str) -> None:
    costs = costmodel.PROFILES[name].costs()
    tenfold = costmodel.scaled(costs, 10)
    for field in attrs.fields(type(costs)):
        before, after = getattr(costs, field.name), getattr(tenfold, field.name)
        if field.name in DURATIONS:
            assert math.isclose(after, 10 * before), field.name
        else:  # the write lock's scope, the provider's cores, serialisation: not durations
            assert after == before, field.name
    # Every duration of Costs is scaled: a new one must be added to costmodel.scaled too.
    floats = {f.name for f in attrs.fields(type(costs)) if f.type in ("float", float)}
    assert floats == set(DURATIONS)


@pytest.mark.parametrize("name", list(costmodel.PROFILES))
def test_the_floor_scales_with_the_costs(name: str) -> None:
    chosen = seed.targets(200)
    costs = costmodel.PROFILES[name].costs()
    one, ten = costmodel.floor(costs, chosen), costmodel.floor(costmodel.scaled(costs, 10), chosen)
    assert math.isclose(ten.seconds, 10 * one.seconds)
    assert (ten.busiest_lock, ten.writes_on_busiest) == (one.busiest_lock, one.writes_on_busiest)


def test_zero_costs_are_the_costs_times_zero() -> None:
    costs = costmodel.PROFILES["writes-per-provider"].costs()
    assert costmodel.without_time(costs) == costmodel.scaled(costs, 0)
    assert costmodel.without_time(costs).write_lock == "provider"


def test_the_overhead_is_given_in_the_default_costs_seconds() -> None:
    chosen = seed.targets(200)
    floor = costmodel.floor(costmodel.scaled(costmodel.default_costs(), 10), chosen)
    cm = run.Measurement(
        "cmproxy", 200, "default", floor.seconds, floor.seconds + 2.0, 0, 0, 0, 200
    )
    text = run.ratios([cm], {200: floor}, scale=10)
    assert "(cmproxy − floor) ÷ 10 (s)" in text
    row = text.splitlines()[-1].split("|")
    assert row[4].strip() == "0.20"  # 2.0 s over a tenfold floor: 0.2 s at the default costs
    assert row[5].strip() == f"{0.5 + 0.03 * floor.seconds / 10:.2f}"


@pytest.mark.parametrize("bad", ["0", "-1", "nan"])
def test_a_scale_that_is_not_above_zero_is_a_usage_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run._options(["--cost-scale", bad])
    assert "--cost-scale must be above 0" in capsys.readouterr().err
