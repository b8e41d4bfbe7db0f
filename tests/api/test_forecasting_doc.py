"""The code of docs/forecasting.md runs as written."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "forecasting.md"


def test_forecasting_guide_code_runs(data_dir):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
    assert len(namespace["future"]) == 96 and namespace["result"].summary.loc["coverage_90", "scaled"] > 0
