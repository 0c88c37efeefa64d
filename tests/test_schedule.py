"""The LR schedule as a pure function of the optimizer step, and the long-warmup warning and error."""

from __future__ import annotations

import pytest

from lmtrain.errors import ConfigError
from lmtrain.train.schedule import ScheduleConfig, check_warmup, lr_at


def _cfg(**kw) -> ScheduleConfig:
    base = {"lr": 3e-4, "min_lr": 3e-5, "warmup": 1000, "total_steps": 20_000, "kind": "cosine"}
    return ScheduleConfig(**(base | kw))


def test_the_table_our_users_worked_out_by_hand() -> None:
    cfg = _cfg()
    assert lr_at(100, cfg) == pytest.approx(3e-5, rel=0.02)
    assert lr_at(500, cfg) == pytest.approx(1.5e-4, rel=0.01)
    assert lr_at(999, cfg) == pytest.approx(3e-4)
    no_warmup = _cfg(warmup=0)
    assert lr_at(0, no_warmup) == pytest.approx(3e-4)
    assert lr_at(1, no_warmup) == pytest.approx(3e-4, rel=1e-6)


def test_warmup_starts_above_zero_and_rises_linearly() -> None:
    cfg = _cfg(warmup=4000)
    assert lr_at(0, cfg) == pytest.approx(3e-4 / 4000) and lr_at(0, cfg) > 0
    lrs = [lr_at(s, cfg) for s in range(4000)]
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert lr_at(1999, cfg) == pytest.approx(1.5e-4)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decay_falls_to_min_lr_on_the_last_step(kind: str) -> None:
    cfg = _cfg(kind=kind, total_steps=5000)
    lrs = [lr_at(s, cfg) for s in range(1000, 5000)]
    assert lrs[0] == pytest.approx(3e-4) and lrs[-1] == pytest.approx(3e-5)
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_cosine_and_linear_midpoints() -> None:
    cos, lin = _cfg(total_steps=2001), _cfg(kind="linear", total_steps=2001)
    assert lr_at(1500, cos) == pytest.approx((3e-4 + 3e-5) / 2)
    assert lr_at(1500, lin) == pytest.approx((3e-4 + 3e-5) / 2)
    assert lr_at(1250, cos) > lr_at(1250, lin)


def test_constant_and_wsd() -> None:
    const = _cfg(kind="constant", total_steps=3000)
    assert lr_at(2999, const) == pytest.approx(3e-4)
    wsd = _cfg(kind="wsd", total_steps=10_000, decay_fraction=0.2)
    assert lr_at(7998, wsd) == pytest.approx(3e-4)
    assert lr_at(9999, wsd) == pytest.approx(3e-5)
    assert 3e-5 < lr_at(9000, wsd) < 3e-4


def test_warmup_as_long_as_the_run_is_an_error_unless_allowed() -> None:
    cfg = _cfg(warmup=1000, total_steps=1000)
    with pytest.raises(ConfigError, match="--allow-long-warmup"):
        check_warmup(cfg, allow_long_warmup=False)
    check_warmup(cfg, allow_long_warmup=True)
    check_warmup(_cfg(warmup=999, total_steps=1000), allow_long_warmup=False)


def test_invalid_schedule_configs() -> None:
    with pytest.raises(ConfigError, match="schedule='step'"):
        _cfg(kind="step")
    with pytest.raises(ConfigError, match="at least one"):
        _cfg(total_steps=0)
