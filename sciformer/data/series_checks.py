"""Checks of a time series' values and timestamps: finite numbers, a sorted unique index, a regular frequency.

Every reader (CSV, DataFrame, xarray, a forecast's history) passes its values through :func:`check_finite`,
the one place where non-finite and out-of-range numbers are refused. Messages quote user content only as a
short printable :func:`excerpt`, so an error never echoes a whole line of an arbitrary file.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from sciformer.errors import ConfigError, DataError

# The largest magnitude accepted: squares of such values summed over 1e8 rows stay finite in float64
# (the scaler's variance, an MSE in original units), where 1e308 would overflow to inf.
MAX_ABS = 1e150


def excerpt(text: object, limit: int = 40) -> str:
    """``text`` quoted, with non-printable characters escaped and cut to ``limit`` characters."""
    cleaned = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))
    return repr(cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "...")


def quote_columns(columns: list, limit: int = 80) -> str:
    """Column names as ``['a', 'b', ...]``, at most ``limit`` characters in all."""
    shown: list[str] = []
    length = 2
    for name in columns:
        quoted = excerpt(name, 30)
        if length + len(quoted) + 2 > limit:
            return "[" + ", ".join([*shown, "..."]) + "]"
        shown.append(quoted)
        length += len(quoted) + 2
    return "[" + ", ".join(shown) + "]"


def numeric_columns(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """``frame`` with every column as float64 (text refused, naming column and row), checked by :func:`check_finite`."""
    out = {}
    for name in frame.columns:
        column = frame[name]
        numeric = pd.to_numeric(column, errors="coerce")
        text = (numeric.isna() & column.notna()).to_numpy()
        if text.any():
            row = int(np.flatnonzero(text)[0])
            raise DataError(
                f"{label}: column {excerpt(name)} has a non-numeric value {excerpt(column.iloc[row])} at {_where(frame.index, row)}; expected numbers only"
            )
        out[str(name)] = numeric.to_numpy(dtype=np.float64)
    result = pd.DataFrame(out, index=frame.index)
    check_finite(result.to_numpy(), list(result.columns), frame.index, label)
    return result


def check_finite(values: np.ndarray, columns: list, index: pd.Index | None, label: str, what: str = "") -> None:
    """Refuse NaN, ±inf and magnitudes above :data:`MAX_ABS` in ``values [T, N]``, naming the first bad
    column and row (or timestamp). ``what`` says which stage the values come from (e.g. "after scaling")."""
    values = np.asarray(values)
    bad = ~np.isfinite(values)
    if float(np.finfo(values.dtype).max) > MAX_ABS:  # float32 values cannot exceed it
        bad |= np.abs(values) > MAX_ABS
    if not bad.any():
        return
    row, col = (int(i[0]) for i in np.nonzero(bad))
    value = float(values[row, col])
    kind = "a missing value (NaN)" if np.isnan(value) else f"the value {value:g}"
    limit = "" if not np.isfinite(value) else f" (beyond ±{MAX_ABS:g}: its square overflows the statistics)"
    raise DataError(f"{label}: column {excerpt(columns[col])} has {kind}{limit} at {_where(index, row)}{what}; expected finite numbers")


def _where(index: pd.Index | None, row: int) -> str:
    if isinstance(index, pd.DatetimeIndex):
        return f"row {row} (time {index[row]})"
    return f"row {row}"


def check_time_index(index: pd.DatetimeIndex, label: str) -> None:
    """Timestamps must be unique and increasing."""
    if index.isna().any():
        row = int(np.flatnonzero(index.isna())[0])
        raise DataError(f"{label}: the time column has a missing timestamp at row {row}")
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise DataError(f"{label}: timestamp {dup} appears more than once; expected unique timestamps")
    if not index.is_monotonic_increasing:
        row = int(np.flatnonzero(np.diff(index.asi8) < 0)[0]) + 1
        raise DataError(f"{label}: timestamps are not sorted (row {row}: {index[row]} comes after {index[row - 1]})")


def infer_frequency(index: pd.DatetimeIndex) -> str | None:
    """The sampling frequency as a pandas alias ("h", "15min"), or None when irregular."""
    try:
        with warnings.catch_warnings():  # pandas 3 warns that it will return an offset object
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(index[: min(len(index), 1000)])
    except (TypeError, ValueError):
        return None
    return getattr(freq, "freqstr", freq)


def regular_frequency(index: pd.DatetimeIndex, freq: str | None, label: str = "the data") -> str:
    """The sampling frequency of ``index`` (given or inferred); raises on a gap or an irregular index."""
    check_time_index(index, label)
    if freq is None:
        if len(index) < 3:
            raise DataError(
                f"{label} has {len(index)} row{'s' if len(index) != 1 else ''}: too few rows to forecast (a sampling "
                "frequency needs at least 3 timestamps, training needs lookback + horizon rows)"
            )
        freq = infer_frequency(index) or _dominant_step(index)
        if freq is None:
            raise DataError(f"cannot infer the sampling frequency of {label}; pass freq=, e.g. freq='h' or freq='15min'")
    offset = to_offset(freq)
    expected = pd.date_range(index[0], periods=len(index), freq=offset)
    if not expected.equals(index):
        i = int((expected != index).argmax())
        raise DataError(
            f"{label} has a gap in its time index: after {index[i - 1]} comes {index[i]}, expected {index[i - 1] + offset} "
            f"(frequency {freq}); fill or resample the series first"
        )
    return offset.freqstr


def to_offset(freq: str) -> pd.DateOffset:
    """The pandas offset of a frequency alias; ConfigError naming the alias when pandas cannot read it."""
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError):
        raise ConfigError(f"freq={excerpt(freq)} is not a pandas frequency; expected an alias such as 'h', '15min', 'D' or 'W-SUN'") from None


def _dominant_step(index: pd.DatetimeIndex) -> str | None:
    """The most common step, when it covers most of the index (lets a gap be reported as a gap)."""
    steps = pd.Series(index[1:] - index[:-1]).value_counts()
    if steps.iloc[0] < 0.5 * (len(index) - 1):
        return None
    return pd.tseries.frequencies.to_offset(steps.index[0]).freqstr


def future_index(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps following ``last``."""
    offset = pd.tseries.frequencies.to_offset(freq)
    return pd.date_range(last + offset, periods=horizon, freq=offset)
