"""The ``sciformer`` command's arguments and refusals: nothing here trains (each test well under a second)."""

from pathlib import Path

import pytest

import sciformer
from sciformer import cli
from sciformer.cli import build_parser, main
from sciformer.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "smoke" / "itransformer.yaml"


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sciformer: error: ") and "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["fit", "R", "--out", "runs/mine", "train.epochs=1"], {"recipe": "R", "overrides": ["train.epochs=1"], "out": Path("runs/mine")}),
        (["fit", "--out", "D", "R", "a=1", "--nproc", "2", "b=2"], {"recipe": "R", "overrides": ["a=1", "b=2"], "nproc": 2}),
        (["fit", "--resume", "RUN", "tracking.enabled=false"], {"recipe": "tracking.enabled=false", "overrides": [], "resume": Path("RUN")}),
        (["evaluate", "RUN", "--device", "cpu", "data.test_resolution=32"], {"run_dir": Path("RUN"), "overrides": ["data.test_resolution=32"]}),
        (["validate", "R", "a=1", "b=2"], {"recipe": "R", "overrides": ["a=1", "b=2"]}),
        (["predict", "--level", "80", "95", "--out", "f.csv", "RUN"], {"run_dir": Path("RUN"), "level": [80.0, 95.0]}),
        (["rollout", "--steps", "3", "RUN", "--split", "all"], {"run_dir": Path("RUN"), "steps": 3, "data": None}),
        (["datasets", "generate", "--n", "2", "burgers1d", "--res", "16", "--out", "b.h5"], {"generator": "burgers1d", "n": 2}),
    ],
    ids=["fit-overrides-after-out", "fit-options-between", "fit-resume-alone", "evaluate", "validate", "predict", "rollout", "generate"],
)
def test_options_and_positionals_in_any_order(argv, expected):
    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"sciformer {sciformer.__version__}"


@pytest.mark.parametrize("verb", ["evaluate", "predict", "rollout"])
def test_a_missing_run_directory_is_named_as_missing(tmp_path, capsys, verb):
    assert _error(capsys, [verb, "runs/nope"]) == "sciformer: error: run directory 'runs/nope' does not exist"
    (tmp_path / "notes.txt").write_text("mine")
    assert _error(capsys, [verb, "notes.txt"]) == "sciformer: error: run directory 'notes.txt' is a regular file, not a folder"


def test_ls_datasets_columns_are_aligned(capsys):
    assert main(["ls", "datasets"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "FREQ", "DESCRIPTION", "FILE"] and len(rows) >= 9
    column = header.index("FILE")
    for row in rows:
        assert row[column - 2 : column] == "  " and row[column] != " ", row  # the description ends before the file column
    assert any(r.startswith("ett_h1 ") for r in rows)


@pytest.mark.parametrize("nproc", ["0", "-2"])
def test_nproc_below_one_is_refused(capsys, nproc):
    err = _error(capsys, ["fit", str(SMOKE), "--nproc", nproc])
    assert f"--nproc {nproc}: expected a number of processes of at least 1" in err


def test_fit_without_a_recipe_or_resume_is_refused(capsys):
    assert "fit needs a recipe" in _error(capsys, ["fit"])
    assert "fit needs a recipe" in _error(capsys, ["fit", "train.epochs=1"])


def test_resume_alone_needs_a_run_with_its_recipe(tmp_path, capsys):
    assert _error(capsys, ["fit", "--resume", "gone"]) == "sciformer: error: cannot resume: run directory 'gone' does not exist"
    (tmp_path / "empty").mkdir()
    err = _error(capsys, ["fit", "--resume", "empty", "train.epochs=2"])
    assert "cannot resume 'empty': it has no recipe.json; give the recipe it was started with: sciformer fit RECIPE --resume empty" in err
    (tmp_path / "empty" / "recipe.json").write_bytes(b"\xff\xfe{")
    assert "cannot resume: 'empty/recipe.json' is damaged" in _error(capsys, ["fit", "--resume", "empty"])


def test_rollout_steps_below_one_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    err = _error(capsys, ["rollout", "run", "--steps", "0", "--no-tracking"])
    assert "steps" in err and "0" in err


@pytest.mark.parametrize("out", ["a_file", "/dev/null", "/dev/null/run", "a_file/run"])
def test_fit_out_that_cannot_be_a_run_directory_is_one_line(tmp_path, capsys, out):
    (tmp_path / "a_file").write_text("the user's own file")
    _error(capsys, ["fit", str(SMOKE), "--out", out, "tracking.enabled=false"])
    assert (tmp_path / "a_file").read_text() == "the user's own file"


def test_non_utf8_recipe_is_one_line(tmp_path, capsys):
    (tmp_path / "r.yaml").write_bytes("train: {epochs: 1}\n".encode("utf-16"))
    _error(capsys, ["validate", "r.yaml"])
    _error(capsys, ["fit", "r.yaml", "--out", "run"])


def test_every_user_error_is_one_line_and_debug_raises(monkeypatch, capsys):
    def fails(args):
        raise ConfigError("first part\nsecond part")

    monkeypatch.setattr(cli, "cmd_validate", fails)
    assert _error(capsys, ["validate", "x.yaml"]) == "sciformer: error: first part second part"
    with pytest.raises(ConfigError):
        main(["--debug", "validate", "x.yaml"])


def test_run_interrupted_prints_its_line_and_exits_with_its_code(monkeypatch, capsys):
    import signal

    from sciformer.errors import RunInterrupted

    def interrupted(args):
        raise RunInterrupted(signal.SIGTERM, "runs/x")

    monkeypatch.setattr(cli, "cmd_validate", interrupted)
    assert main(["validate", "x.yaml"]) == 143
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sciformer fit --resume runs/x" in err


def test_warnings_are_one_line_while_a_command_runs():
    import warnings

    with cli.one_line_warnings():
        inside = warnings.formatwarning("tracking failed (reason\nwith a second line); kept", RuntimeWarning, "x.py", 3)
        coloured = warnings.formatwarning("\x1b[1;33mAn input example was not provided.\x1b[0m", UserWarning, "x.py", 3)
    assert inside == "sciformer: warning: tracking failed (reason with a second line); kept\n"
    assert coloured == "sciformer: warning: An input example was not provided.\n"
    assert "x.py:3" in warnings.formatwarning("later", RuntimeWarning, "x.py", 3)  # given back afterwards


def test_beside_other_work_openmp_takes_the_idle_cores_and_waits_passively_unless_the_user_chose():
    # spinning OpenMP workers made a small CPU step 1.3-14x slower than one thread beside other work (benchmarks/cpu_threads.py)
    from sciformer import cpu_thread_defaults

    assert cpu_thread_defaults({}, 2, 0) == {}  # quiet: torch's own settings, the fastest there
    assert cpu_thread_defaults({}, 2, 1) == cpu_thread_defaults({}, 2, 9) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    assert cpu_thread_defaults({}, 16, 5) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "11"}
    assert cpu_thread_defaults({}, 1, 3) == {}  # one core, one thread: no worker ever waits
    assert cpu_thread_defaults({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2"}, 2, 9) == {}
    assert cpu_thread_defaults({"GOMP_SPINCOUNT": "0"}, 2, 9) == {"OMP_NUM_THREADS": "1"}


def test_import_sets_the_wait_policy_before_torch_loads_and_keeps_the_users():
    import os
    import subprocess
    import sys

    def policy(busy: int, **env: str) -> str:
        keep = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            code = "import os, time; time.sleep(0.3); import sciformer; print(os.environ.get('OMP_WAIT_POLICY'))"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=keep | env | {"PYTHONPATH": str(REPO)}, check=True)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        return out.stdout.strip()

    assert policy(3) == "PASSIVE"  # three spinning processes on any machine of this test's size: busy
    assert policy(3, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_a_missing_positional_names_only_what_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate"])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith("the following arguments are required: run_dir")


HUGE = "9" * 5000


@pytest.mark.parametrize("argv", [["fit", "r.yaml", "--nproc", "two"], ["evaluate", "run", "--nope"], ["ls", "things"], ["rollout", "run", "--steps", HUGE]])
def test_argparse_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("sciformer: error: ")
    assert len(err) < 300  # a huge value is not echoed whole


def test_sigterm_during_generate_keeps_a_partial_file_the_same_command_continues(tmp_path, monkeypatch, capsys):
    """SIGTERM closes the partial HDF5 file as Ctrl-C does (exit 143), so the same command finishes it."""
    import os
    import signal

    import h5py

    from sciformer.data.generators import writer

    out = tmp_path / "burgers.h5"
    argv = ["datasets", "generate", "burgers1d", "--n", "6", "--res", "16", "--nu", "0.05", "--batch-size", "2", "--out", str(out)]
    write_batch, before = writer._write_batch, signal.getsignal(signal.SIGTERM)

    def terminated_after_two(gen_obj, w, plan, bi, *args):
        write_batch(gen_obj, w, plan, bi, *args)
        if bi == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writer, "_write_batch", terminated_after_two)
    assert main(argv) == 143 and "interrupted" in capsys.readouterr().err
    partial = tmp_path / "burgers.h5.partial"
    with h5py.File(partial, "r") as f:  # readable: closed cleanly
        assert int(f.attrs["batches_done"]) >= 1
    monkeypatch.setattr(writer, "_write_batch", write_batch)
    assert main(argv) == 0 and out.is_file() and not partial.exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler is gone again
