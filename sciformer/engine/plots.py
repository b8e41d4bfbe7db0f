"""Figures written into run directories (matplotlib, headless).

Figures are plain ``matplotlib.figure.Figure`` objects rendered by Agg: no pyplot, so no GUI backend is chosen or
imported and no global figure registry has to be cleaned up (pyplot's import is a second of ``sciformer fit``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from sciformer.errors import storage_error


def preload() -> threading.Thread:
    """Import matplotlib's figure and Agg modules (and load its font list) in a background thread, so that a run
    pays for them while it trains rather than after. Safe: matplotlib shares no modules with torch that are not
    imported already, and a later import of the same modules simply waits for this one."""

    def load() -> None:
        import matplotlib.backends.backend_agg
        import matplotlib.figure
        import matplotlib.font_manager  # noqa: F401

    thread = threading.Thread(target=load, name="sciformer-preload-matplotlib", daemon=True)
    thread.start()
    return thread


def new_figure(figsize: tuple[float, float]):
    """An Agg-rendered figure outside pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def forecast_figure(history: np.ndarray, truth: np.ndarray, prediction: np.ndarray, columns: list[str], title: str = ""):
    """Grid of windows × variables: lookback history, true future and forecast.

    ``history [W, L, V]``, ``truth [W, H, V]``, ``prediction [W, H, V]`` for W windows and V variables.
    """
    n_windows, lookback, n_vars = history.shape
    horizon = truth.shape[1]
    fig = new_figure((4.2 * n_windows, 2.4 * n_vars))
    axes = fig.subplots(n_vars, n_windows, squeeze=False, sharex=True)
    past, future = np.arange(-lookback, 0), np.arange(horizon)
    for v in range(n_vars):
        for w in range(n_windows):
            ax = axes[v, w]
            ax.plot(past, history[w, :, v], color="0.45", lw=1, label="history")
            ax.plot(future, truth[w, :, v], color="C0", lw=1.2, label="truth")
            ax.plot(future, prediction[w, :, v], color="C3", lw=1.2, label="forecast")
            ax.axvline(0, color="0.8", lw=0.8)
            if w == 0:
                ax.set_ylabel(columns[v], fontsize=8)
            if v == 0:
                ax.set_title(f"test window {w + 1}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("step (scaled values)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Render ``fig`` as a PNG at ``path``; a failed write (a full disk) raises StorageError naming the path."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise storage_error(exc, path) from None
    return path


def field_figure(truth, prediction, title: str = ""):
    """Truth, prediction and error of one sample ``[C, *grid]`` (1D: lines, 2D: images; first channel)."""
    truth, prediction = np.asarray(truth)[0], np.asarray(prediction)[0]
    error = prediction - truth
    if truth.ndim == 1:
        fig = new_figure((7, 3))
        ax = fig.subplots()
        ax.plot(truth, label="truth")
        ax.plot(prediction, "--", label="prediction")
        ax.plot(error, ":", label="error")
        ax.legend(fontsize=8)
    else:
        if truth.ndim == 3:  # 3D: the middle slice
            truth, prediction, error = (a[a.shape[0] // 2] for a in (truth, prediction, error))
        fig = new_figure((11, 3.4))
        axes = fig.subplots(1, 3)
        vmin, vmax = truth.min(), truth.max()
        styles = ({"vmin": vmin, "vmax": vmax},) * 2 + ({"cmap": "RdBu_r"},)
        for ax, img, name, kw in zip(axes, (truth, prediction, error), ("truth", "prediction", "error"), styles):
            im = ax.imshow(img.T, origin="lower", **kw)
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def step_error_figure(nrmse: list[float]):
    """nRMSE against rollout step (log scale)."""
    fig = new_figure((6, 3.5))
    ax = fig.subplots()
    ax.semilogy(np.arange(1, len(nrmse) + 1), nrmse, marker="o", ms=3)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("nRMSE")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def rollout_animation(truth, prediction, path: str | Path, fps: int = 5) -> Path:
    """GIF of truth | prediction over the rollout steps of one sample ``[steps, C, *grid]`` (first channel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    truth, prediction = np.asarray(truth)[:, 0], np.asarray(prediction)[:, 0]
    if truth.ndim == 4:  # 3D: middle slice
        truth, prediction = truth[:, truth.shape[1] // 2], prediction[:, prediction.shape[1] // 2]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    if truth.ndim == 2:  # 1D fields: lines
        lines = [ax.plot(truth[0])[0] for ax in axes]
        for ax, name in zip(axes, ("truth", "prediction")):
            ax.set_ylim(truth.min(), truth.max())
            ax.set_title(name, fontsize=9)
        update = lambda k: [lines[0].set_ydata(truth[k]), lines[1].set_ydata(prediction[k])]  # noqa: E731
    else:
        vmin, vmax = truth.min(), truth.max()
        images = [ax.imshow(a[0].T, origin="lower", vmin=vmin, vmax=vmax) for ax, a in zip(axes, (truth, prediction))]
        for ax, name in zip(axes, ("truth", "prediction")):
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        update = lambda k: [images[0].set_data(truth[k].T), images[1].set_data(prediction[k].T)]  # noqa: E731
    FuncAnimation(fig, update, frames=len(truth)).save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)
    return Path(path)
