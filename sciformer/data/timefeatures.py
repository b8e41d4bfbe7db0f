"""Calendar features of timestamps, each scaled to [-0.5, 0.5] (the ``timeF`` encoding of Informer/TSLib).

Which features a frequency gets follows TSLib's ``utils/timefeatures.py``: hourly data → hour of day,
day of week, day of month, day of year (4 columns); minutely adds minute of hour (5); and so on.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sciformer.errors import ConfigError


def _second_of_minute(t: pd.DatetimeIndex) -> np.ndarray:
    return t.second / 59.0 - 0.5


def _minute_of_hour(t: pd.DatetimeIndex) -> np.ndarray:
    return t.minute / 59.0 - 0.5


def _hour_of_day(t: pd.DatetimeIndex) -> np.ndarray:
    return t.hour / 23.0 - 0.5


def _day_of_week(t: pd.DatetimeIndex) -> np.ndarray:
    return t.day_of_week / 6.0 - 0.5


def _day_of_month(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.day - 1) / 30.0 - 0.5


def _day_of_year(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.day_of_year - 1) / 365.0 - 0.5


def _month_of_year(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.month - 1) / 11.0 - 0.5


def _week_of_year(t: pd.DatetimeIndex) -> np.ndarray:
    return (t.isocalendar().week.to_numpy() - 1) / 52.0 - 0.5


_FEATURES = {
    "y": [],
    "q": [_month_of_year],
    "m": [_month_of_year],
    "w": [_day_of_month, _week_of_year],
    "d": [_day_of_week, _day_of_month, _day_of_year],
    "h": [_hour_of_day, _day_of_week, _day_of_month, _day_of_year],
    "t": [_minute_of_hour, _hour_of_day, _day_of_week, _day_of_month, _day_of_year],
    "s": [_second_of_minute, _minute_of_hour, _hour_of_day, _day_of_week, _day_of_month, _day_of_year],
}
_ALIASES = {"min": "t", "b": "d", "me": "m", "ms": "m", "qe": "q", "qs": "q", "a": "y", "ye": "y", "ys": "y"}


def feature_code(freq: str) -> str:
    """Normalise a frequency ("h", "15min", "10T", "D", "W-SUN") to one of y q m w d h t s."""
    base = re.sub(r"^\d+", "", str(freq)).split("-")[0].lower()
    code = _ALIASES.get(base, base)
    if code not in _FEATURES:
        raise ConfigError(
            f"time-feature frequency {freq!r} is not supported; expected one of h, t/min, s, d, b, w, m, q, y (optionally with a multiple, e.g. 15min)"
        )
    return code


def n_time_features(freq: str) -> int:
    return len(_FEATURES[feature_code(freq)])


def time_features(timestamps: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """``[T, F]`` float32 features of ``timestamps`` for frequency ``freq``."""
    columns = [np.asarray(f(timestamps), dtype=np.float64) for f in _FEATURES[feature_code(freq)]]
    if not columns:
        return np.zeros((len(timestamps), 0), dtype=np.float32)
    return np.stack(columns, axis=1).astype(np.float32)
