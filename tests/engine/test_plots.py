"""Run figures: drawn without pyplot, with matplotlib preloaded while a run trains."""

import subprocess
import sys

import numpy as np
import pytest

from sciformer.engine import plots


def test_preload_imports_matplotlib_in_the_background():
    thread = plots.preload()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert {"matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.font_manager"} <= sys.modules.keys()


def test_figures_are_written_without_pyplot(tmp_path):
    rng = np.random.default_rng(0)
    forecast = plots.forecast_figure(rng.normal(size=(2, 8, 3)), rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3)), ["a", "b", "c"], "t")
    fields = plots.field_figure(rng.normal(size=(1, 6, 6)), rng.normal(size=(1, 6, 6)))
    for name, fig in (("forecast.png", forecast), ("fields.png", fields), ("steps.png", plots.step_error_figure([0.1, 0.2]))):
        path = plots.save_figure(fig, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration  # a fresh interpreter
def test_drawing_a_run_figure_does_not_import_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from sciformer.engine import plots\n"
        f"plots.save_figure(plots.field_figure(np.ones((1, 4, 4)), np.zeros((1, 4, 4))), {str(tmp_path / 'f.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
