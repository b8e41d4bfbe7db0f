"""benchmarks/results_page.py: a pivoted table on the page, every recorded row and column on the model cards."""

from benchmark_script import load_benchmark


def _script():
    return load_benchmark("results_page")


TABLE = {
    "caption": "Other horizons",
    "command": "python benchmarks/forecast_matrix.py",
    "machine": "H100",
    "date": "2026-12-07",
    "columns": ["model", "data", "H", "test MSE", "published"],
    "rows": [["a", "ETTh1", 192, "0.4", "0.5"], ["a", "ETTm1", 96, "0.3", "not known"], ["b", "ETTh1", 192, "0.6", "0.5"]],
    "pivot": {"across": [1, 2], "cell": "{3} ({4})", "note": "cells: MSE (published)"},
}


def test_a_pivot_gives_a_row_per_model_and_a_column_per_data_set_and_horizon():
    page = _script().pivoted(TABLE)
    assert page["columns"] == ["model", "ETTh1 192", "ETTm1 96"] and page["notes"] == ["cells: MSE (published)"]
    assert page["rows"] == [["a", "0.4 (0.5)", "0.3 (not known)"], ["b", "0.6 (0.5)", "–"]]


def test_the_page_pivots_and_a_model_card_keeps_the_recorded_rows():
    bench = _script()
    page = bench.render_page([{"title": "Forecasting", "tables": [TABLE]}])
    assert "| model | ETTh1 192 | ETTm1 96 |" in page and "| a | ETTh1 | 192 |" not in page
    card = "\n".join(bench.rows_for_model([{"title": "Forecasting", "tables": [TABLE]}], "a"))
    assert "| a | ETTh1 | 192 | 0.4 | 0.5 |" in card and "| a | ETTm1 | 96 | 0.3 | not known |" in card


def test_the_recorded_results_make_a_page_within_its_limit():
    bench = _script()
    assert bench.render_page(bench.load_results()).count("\n") <= bench.MAX_LINES == 300
