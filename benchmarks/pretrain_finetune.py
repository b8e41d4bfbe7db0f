"""Sample efficiency of a pretrained scOT: pretrain once on a PDE mixture, fine-tune on a held-out regime with N
trajectories, beside scOT and FNO trained from scratch on the same N with the same budget (Poseidon, Herde et al.,
"Poseidon: Efficient Foundation Models for PDEs", arXiv 2405.19101).

    python benchmarks/pretrain_finetune.py --out results/pretrain_finetune             # a GPU: 64², N up to 512
    python benchmarks/pretrain_finetune.py --tiny --out /tmp/pretrain_finetune         # CPU, about a minute

Pretraining data: forced vorticity Navier–Stokes at two viscosities (one frame per time unit), decaying turbulence on
[0, 2π]² (frames 0.1 apart) and FitzHugh–Nagumo diffusion–reaction, in the layout [vorticity, u, v] + presence
channels (``data.mixture``); held out: Navier–Stokes with Kolmogorov forcing and drag on [0, 2π]², which no member has, its frames 0.1 time units apart (the flow decorrelates within one unit). The held-out pool is cut into test, validation and training trajectories once, so every model
and every N is scored on the same test trajectories. Each training run has the same epochs, batch size, learning
rate, schedule and relative-L2 loss (the "same budget"); fine-tuning starts from every pretrained weight (the held-out data is laid out
in the pretraining channels), the scratch models train on the plain vorticity field.

Error: one-step relative L2 of the vorticity, per test window, averaged (Poseidon scores the relative L1 error at
the final time of a rollout instead). EG and AG as Poseidon defines them (eq. 11), FNO from scratch the baseline:
AG_S = E_S(FNO) / E_S(model), how many times smaller the model's error is at the same S trajectories (S = 128, as
Poseidon takes for time-dependent PDEs); EG_S = S / s where E_s(model) = E_S(FNO), how many times fewer trajectories
the model needs to reach FNO's error at S (S = the largest N; s from a power law fitted to the model's errors). The
same pair is also given against scOT from scratch. A zero-shot row scores the pretrained model on
the held-out test set with no fine-tuning. Outputs: ``results.json``, ``error_vs_n.png`` and ``table.md`` in
``--out``.

Over several short jobs: a rerun with the same ``--out`` and settings (``settings.json``; other settings are refused)
reuses the simulated data, the pretrained run (``pretrain/`` with its ``metrics.json`` and ``checkpoint/``) and every
finished (model, N) (a file each in ``finished/``);
``--pretrain-only`` stops after pretraining. ``--jobs K`` trains K of the (model, N) runs at once, each a process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sciformer.config import TrainConfig, recipe_from_dict  # noqa: E402
from sciformer.data.generators import generate  # noqa: E402
from sciformer.data.operator import OperatorData, SplitTensors  # noqa: E402
from sciformer.data.sources import open_source  # noqa: E402
from sciformer.data.sources.mixture import Member, MixtureSource  # noqa: E402
from sciformer.engine.checkpoint import load_model  # noqa: E402
from sciformer.engine.losses import relative_l2  # noqa: E402
from sciformer.engine.pretrained import apply_init, resolve_init  # noqa: E402
from sciformer.engine.runner import fit_recipe  # noqa: E402
from sciformer.engine.tasks.operator import step_of  # noqa: E402
from sciformer.engine.trainer import Trainer, pick_device, seed_everything  # noqa: E402
from sciformer.registry import build_model  # noqa: E402

FIELDS = ["vorticity", "u", "v"]
# every run trains on the relative L2 it is scored by: the members' and the held-out set's fields differ in scale
# (vorticity std 0.3 → 1 in the NS members, 0.3 → 4.7 in the held-out flow), and the models see unnormalised fields
LOSS = "rel_l2"


@dataclass(frozen=True)
class Setting:
    """One scale of the benchmark: grid, trajectories, models and the training budget."""

    res: int
    ns: tuple[int, ...]
    pretrain_n: int  # trajectories per pretraining member
    n_val: int
    n_test: int
    t_end: float
    pretrain_epochs: int
    epochs: int
    batch_size: int
    lr: float
    scot: dict[str, Any] = field(default_factory=dict)
    fno: dict[str, Any] = field(default_factory=dict)
    pretrain_batch_size: int | None = None  # None: batch_size
    heldout_dt: float = 0.1  # time between the held-out set's frames (it has as many frames as the NS members)


FULL = Setting(
    res=64, ns=(8, 32, 128, 512), pretrain_n=1024, n_val=32, n_test=64, t_end=20.0, pretrain_epochs=40, epochs=40, batch_size=32,
    lr=5e-4, scot={"embed_dim": 48, "depths": [2, 2, 2], "n_heads": [3, 6, 12], "skip_blocks": [2, 2, 0], "patch_size": 4, "window_size": 4},
    fno={"modes": 16, "width": 48, "n_layers": 4},
)  # fmt: skip
TINY = Setting(
    res=16, ns=(2, 4, 8), pretrain_n=12, n_val=2, n_test=4, t_end=4.0, pretrain_epochs=2, epochs=2, batch_size=16, lr=2e-3,
    scot={"embed_dim": 16, "depths": [1, 1], "n_heads": [2, 4], "skip_blocks": [1, 0], "patch_size": 2, "window_size": 4},
    fno={"modes": 4, "width": 8, "n_layers": 2},
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ data
def data_specs(s: Setting) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """Each data set of the benchmark: name -> (generator, trajectories, parameters)."""
    pool = max(s.ns) + s.n_val + s.n_test
    ns_steps = {"t_end": s.t_end}  # a frame per time unit
    # Kolmogorov flow on [0, 2π]² decorrelates within a time unit (one-step persistence error > 1 from t = 3 at 32²):
    # its frames are heldout_dt apart, so that one step is predictable (persistence error 0.7 → 0.06 over 20 frames)
    kolmogorov = {"nu": 1e-3, "forcing": "kolmogorov", "t_end": s.t_end * s.heldout_dt, "dt_save": s.heldout_dt}
    # decaying turbulence on the held-out flow's domain and time spacing: pretraining covers the time scale the held-out
    # task is asked at (Poseidon's lead time does the same), while its forcing and drag stay unseen
    decaying = {"nu": 1e-3, "forcing": "none", "length": 2 * math.pi, "t_end": s.t_end * s.heldout_dt, "dt_save": s.heldout_dt}
    return {
        "ns_nu1e-3": ("ns2d", s.pretrain_n, {"nu": 1e-3, "forcing": "fno", **ns_steps}),
        "ns_nu1e-4": ("ns2d", s.pretrain_n, {"nu": 1e-4, "forcing": "fno", **ns_steps}),
        "ns_decaying": ("ns2d", s.pretrain_n, decaying),
        "diffreact": ("diffreact2d", s.pretrain_n, {"t_end": 0.5, "dt_save": 0.5 / s.t_end}),  # as many frames as NS
        "heldout_kolmogorov": ("ns2d", pool, kolmogorov),
    }


def simulate(s: Setting, folder: Path, device: str) -> dict[str, Path]:
    """The pretraining members and the held-out pool (simulated once; a rerun reuses the files)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (generator, n, params) in data_specs(s).items():
        path = data_path(s, folder, name)
        if not path.exists():
            generate(generator, path, n=n, res=s.res, device=device, progress=False, **params)
        paths[name] = path
    return paths


def data_path(s: Setting, folder: Path, name: str) -> Path:
    """The file of data set ``name``; ``settings.json`` (:func:`check_settings`) ties a folder to one setting."""
    return folder / f"{name}_{s.res}.h5"


def heldout_splits(path: Path, s: Setting, n: int, layout: bool) -> OperatorData:
    """Test, validation and the first ``n`` training trajectories of the held-out pool; ``layout``: in the
    pretraining channels (fields + presence), else the plain vorticity."""
    source = open_source(path)
    rows = {"test": range(s.n_test), "val": range(s.n_test, s.n_test + s.n_val), "train": range(s.n_test + s.n_val, s.n_test + s.n_val + n)}

    def read(ids: range) -> torch.Tensor:
        if not layout:
            return torch.from_numpy(source.read(list(ids)))
        mixed = MixtureSource([Member(source, list(ids), 1.0, ["vorticity"])], FIELDS, [(0, i) for i in ids])
        return torch.from_numpy(mixed.read(slice(None)))

    data = OperatorData({split: SplitTensors(trajectories=read(ids)) for split, ids in rows.items()}, name="held-out")
    if layout:
        data.masked_fields = len(FIELDS)  # type: ignore[attr-defined]
    return data


# ---------------------------------------------------------------------------------------------- models
@torch.no_grad()
def vorticity_error(model: torch.nn.Module, data: OperatorData, batch_size: int) -> float:
    """Mean one-step relative L2 of channel 0 (the vorticity in both layouts) over the test windows."""
    step, errors = step_of(data), []
    for batch in data.batches("test", batch_size):
        pred, target = step(model.eval(), batch)
        errors.append(relative_l2(pred[:, :1].float(), target[:, :1]))
    return torch.cat(errors).mean().item()


def train(model: torch.nn.Module, data: OperatorData, s: Setting, device: torch.device, seed: int) -> float:
    # on a GPU every step replays from a CUDA graph (pretraining too): these small models are launch-bound, and eager
    # steps leave the GPU mostly idle; a CPU ignores the setting
    cfg = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, lr_schedule="cosine", loss=LOSS, patience=0, progress=False, device=str(device),
                      cuda_graphs=True)  # fmt: skip
    Trainer(model, cfg, device, seed=seed, step=step_of(data)).fit(data.to(device))
    return vorticity_error(model, data, s.batch_size)


def pretrain(s: Setting, paths: dict[str, Path], out: Path, device: str, seed: int) -> Path:
    members = [
        {"path": str(paths["ns_nu1e-3"]), "channels": ["vorticity"]},
        {"path": str(paths["ns_nu1e-4"]), "channels": ["vorticity"]},
        {"path": str(paths["ns_decaying"]), "channels": ["vorticity"]},
        {"path": str(paths["diffreact"]), "weight": 3},  # as recipes/pretrain_poseidon.yaml: NS is half of each epoch
    ]
    recipe = recipe_from_dict({
        "data": {"name": "mixture", "mixture": members, "mixture_channels": FIELDS},
        "model": {"name": "poseidon", **s.scot, "residual": True},
        "train": {"epochs": s.pretrain_epochs, "batch_size": s.pretrain_batch_size or s.batch_size, "lr": s.lr, "lr_schedule": "cosine", "loss": LOSS, "patience": 0, "cuda_graphs": True,
                  "progress": False, "device": device},
        "tracking": {"enabled": False},
        "seed": seed,
        "name": "pretrain",
    })  # fmt: skip
    run = out / "pretrain"
    if not (run / "metrics.json").is_file():
        with contextlib.redirect_stdout(sys.stderr):
            fit_recipe(recipe, run)
    return run


def scot(s: Setting, data: OperatorData) -> torch.nn.Module:
    return build_model("poseidon", {**s.scot, "residual": True}, **data.sizes())


def fno(s: Setting, data: OperatorData) -> torch.nn.Module:
    return build_model("fno", {**s.fno, "residual": True}, **data.sizes())


# --------------------------------------------------------------------------------------------- results
def power_law(ns: list[int], errors: list[float]) -> tuple[float, float]:
    """``(C, α)`` of the least-squares fit ``log E = log C − α log N``."""
    slope, intercept = np.polyfit(np.log(ns), np.log(errors), 1)
    return math.exp(intercept), -slope


def gains(ns: list[int], model: list[float], baseline: list[float]) -> dict[str, Any]:
    """Poseidon's gains of ``model`` over ``baseline`` (arXiv 2405.19101, eq. 11): AG_S = E_S(baseline) / E_S(model),
    measured at S = 128 where that N was run (Poseidon's S for time-dependent PDEs), else at the largest N;
    EG_S = S / s with E_s(model) = E_S(baseline) at S = the largest N, s read off a power law ``E(N) = C·N^(-α)``
    fitted to the model's errors. EG is None when the model's error does not fall with N and stays above."""
    n_eg = max(ns)
    target = baseline[ns.index(n_eg)]
    c, alpha = power_law(ns, model)
    if alpha > 1e-6:  # a fit of equal errors gives a rounding-sized slope, not an improvement
        log_eg = math.log(n_eg) - math.log(c / target) / alpha  # in logs: a shallow slope overflows the plain formula
        eg: float | None = math.exp(log_eg) if log_eg < 700 else math.inf
    else:  # an error that does not fall with N: below the target at every N, or at none
        eg = math.inf if model[ns.index(n_eg)] <= target else None
    n_ag = 128 if 128 in ns else n_eg
    return {"EG": eg, "EG_at": n_eg, "AG": baseline[ns.index(n_ag)] / model[ns.index(n_ag)], "AG_at": n_ag, "alpha": alpha}


def _gain(value: float | None) -> str:
    return "–" if value is None else "∞" if math.isinf(value) else f"{value:.2f}"


def table(results: dict[str, Any]) -> str:
    ns = results["ns"]
    any_gain = next(iter(results["gains"].values()))["fno_scratch"]
    at = f"EG at N={any_gain['EG_at']}, AG at N={any_gain['AG_at']}"
    head = f"| model | {' | '.join(f'N = {n}' for n in ns)} | EG vs FNO | AG vs FNO | EG vs scOT | AG vs scOT |"
    rows = [f"One-step relative L2 of the vorticity on the held-out test set ({at}).", "", head, "|---" * (len(ns) + 5) + "|"]
    for name, errors in results["errors"].items():
        g_fno, g_scot = results["gains"][name]["fno_scratch"], results["gains"][name]["scot_scratch"]
        cells = " | ".join(f"{e:.4f}" for e in errors)
        rows.append(f"| {name} | {cells} | {_gain(g_fno['EG'])} | {_gain(g_fno['AG'])} | {_gain(g_scot['EG'])} | {_gain(g_scot['AG'])} |")
    rows.append(f"| zero-shot (pretrained, no fine-tuning) | {results['zero_shot']:.4f} (every N) |" + " |" * (len(ns) + 3))
    errors = results["errors"]
    if 32 in ns and 512 in ns:  # the bar: fine-tuned at 32 at or below scOT from scratch at 512, below FNO at 32
        tuned = errors["scOT pretrained + fine-tuned"][ns.index(32)]
        scot_512, fno_32 = errors["scOT from scratch"][ns.index(512)], errors["FNO from scratch"][ns.index(32)]
        rows += ["", f"fine-tuned at N=32: {tuned:.4f} vs scOT from scratch at N=512: {scot_512:.4f} ({'met' if tuned <= scot_512 else 'not met'}); "
                 f"vs FNO from scratch at N=32: {fno_32:.4f} ({'met' if tuned < fno_32 else 'not met'})"]
    return "\n".join(rows)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, errors in results["errors"].items():
        ax.loglog(results["ns"], errors, "o-", label=name)
    ax.axhline(results["zero_shot"], color="grey", ls="--", label="zero-shot")
    ax.set_xlabel("training trajectories N (held-out task)")
    ax.set_ylabel("one-step relative L2 (vorticity)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MODELS = ("scOT pretrained + fine-tuned", "scOT from scratch", "FNO from scratch")
ZERO_SHOT = "zero-shot"


def _result_file(out: Path, model: str, n: int | None = None) -> Path:
    slug = "_".join(model.lower().replace("+", "").split())
    return out / "finished" / (f"{slug}_n{n}.json" if n is not None else f"{slug}.json")


def _finished(out: Path, model: str, n: int | None = None) -> dict[str, Any] | None:
    """The recorded result of (model, N) (``error``, ``seconds``), or None while it is not finished."""
    path = _result_file(out, model, n)
    return json.loads(path.read_text()) if path.is_file() else None


def _record(out: Path, model: str, n: int | None, error: float, seconds: float) -> None:
    """One file per finished (model, N): parallel jobs never write the same file, and a rerun skips what is there."""
    path = _result_file(out, model, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model": model, "n": n, "error": error, "seconds": round(seconds, 1)}))
    tmp.replace(path)


def train_one(s: Setting, out: Path, device: str, seed: int, model_name: str, n: int) -> float:
    """Train and score one (model, N) of the table, recording it."""
    torch_device = pick_device(device)
    started = time.perf_counter()
    heldout = data_path(s, out / "data", "heldout_kolmogorov")
    seed_everything(seed)
    data = heldout_splits(heldout, s, n, layout=model_name == MODELS[0])
    model = fno(s, data) if model_name == MODELS[2] else scot(s, data)
    if model_name == MODELS[0]:
        apply_init(model, resolve_init(str(out / "pretrain"), "poseidon"))
    error = train(model, data, s, torch_device, seed)
    _record(out, model_name, n, error, time.perf_counter() - started)
    print(f"{model_name}, N={n}: {error:.4f} in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    return error


def run_parallel(pending: list[tuple[str, int]], child_args: list[str], jobs: int) -> None:
    """Each pending (model, N) in a process of its own, ``jobs`` at a time (small models leave a GPU mostly idle)."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def child(job: tuple[str, int]) -> int:
        cmd = [sys.executable, str(Path(__file__).resolve()), *child_args, "--only", job[0], str(job[1])]
        return subprocess.run(cmd, check=False).returncode

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = list(pool.map(child, pending))
    failed = [f"{m} N={n}" for (m, n), code in zip(pending, codes) if code != 0]
    if failed:
        raise RuntimeError(f"these runs failed: {', '.join(failed)} (their errors are above)")


SETTINGS = "settings.json"  # in --out: the settings its data and runs were made with


def check_settings(s: Setting, out: Path, seed: int) -> None:
    """Reuse what ``out`` holds only if it was made with these settings (data, pretraining, budget, seed): a rerun
    with other settings would otherwise mix old runs into the new table. Records them on first use."""
    facts = json.loads(json.dumps({"setting": s.__dict__, "seed": seed, "data": data_specs(s)}))  # tuples as JSON holds them
    path = out / SETTINGS
    if not path.is_file():
        path.write_text(json.dumps(facts, indent=1))
        return
    held = json.loads(path.read_text())
    if held != facts:
        keys = {**held["setting"], **facts["setting"]}
        changed = [k for k in keys if held["setting"].get(k) != facts["setting"].get(k)] + (["seed"] if held.get("seed") != seed else [])
        changed = changed or ["the simulated data's parameters"]
        verb = "differs" if len(changed) == 1 else "differ"
        raise SystemExit(f"{out} holds runs made with other settings ({', '.join(changed)} {verb}): give another --out")


def run(s: Setting, out: Path, device: str, seed: int, pretrain_only: bool = False, jobs: int = 1, child_args: list[str] | None = None,
        command: str = "python benchmarks/pretrain_finetune.py") -> dict[str, Any] | None:
    out.mkdir(parents=True, exist_ok=True)
    check_settings(s, out, seed)
    torch_device = pick_device(device)
    started = time.perf_counter()
    paths = simulate(s, out / "data", "cuda" if torch_device.type == "cuda" else "cpu")
    pretrained = pretrain(s, paths, out, device, seed)
    if pretrain_only:
        return None
    init = resolve_init(str(pretrained), "poseidon")
    if _finished(out, ZERO_SHOT) is None:
        zero_shot_model, _ = load_model(pretrained / "checkpoint", torch_device)
        split = heldout_splits(paths["heldout_kolmogorov"], s, min(s.ns), layout=True).to(torch_device)
        _record(out, ZERO_SHOT, None, vorticity_error(zero_shot_model, split, s.batch_size), 0.0)
    # every finished (model, N) is kept, so that the benchmark can be built over several short jobs
    pending = [(name, n) for n in s.ns for name in MODELS if _finished(out, name, n) is None]
    if jobs > 1 and len(pending) > 1:
        run_parallel(pending, child_args or [], jobs)
    else:
        for name, n in pending:
            train_one(s, out, device, seed, name, n)
    finished = {name: [_finished(out, name, n) for n in s.ns] for name in MODELS}  # every run is finished here
    errors = {name: [r["error"] for r in runs] for name, runs in finished.items()}
    seconds = {name: [r["seconds"] for r in runs] for name, runs in finished.items()}
    zero_shot = _finished(out, ZERO_SHOT)["error"]
    ns = list(s.ns)
    results = {
        "ns": ns,
        "errors": errors,
        "train_seconds": seconds,
        "zero_shot": zero_shot,
        "gains": {
            name: {"fno_scratch": gains(ns, e, errors["FNO from scratch"]), "scot_scratch": gains(ns, e, errors["scOT from scratch"])}
            for name, e in errors.items()
        },
        "setting": dict(s.__dict__),
        "device": torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "cpu",
        "seconds": round(time.perf_counter() - started, 1),
        "pretrained": {"run": str(pretrained), **init.lineage},
        "command": command,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "table.md").write_text(table(results) + "\n")
    plot(results, out / "error_vs_n.png")
    return results


RESULTS = REPO / "benchmarks" / "results" / "operators.json"
FIGURE = REPO / "docs" / "img" / "pretrain_finetune.png"


def record(results: dict[str, Any], out: Path, command: str) -> None:
    """Put the table into the results page's operators topic and the plot into docs/img (``--record``)."""
    import shutil

    sys.path.insert(0, str(REPO / "benchmarks"))
    from operator_table import write_results

    s, ns = results["setting"], results["ns"]
    rows = []
    for name, errors in results["errors"].items():
        g_fno, g_scot = results["gains"][name]["fno_scratch"], results["gains"][name]["scot_scratch"]
        rows.append([name, *(f"{e:.4f}" for e in errors), _gain(g_fno["EG"]), _gain(g_fno["AG"]), _gain(g_scot["EG"]), _gain(g_scot["AG"])])
    verdict = table(results).splitlines()[-1]
    pretrain_seconds = json.loads((out / "pretrain" / "metrics.json").read_text())["train_seconds"]
    runs = [t for times in results["train_seconds"].values() for t in times]
    zero_shot = f"{results['zero_shot']:.4f}"
    gain_at = next(iter(results["gains"].values()))["fno_scratch"]
    t = {
        "caption": f"Pretrain → fine-tune (scOT): held-out Kolmogorov flow at {s['res']}², error against training trajectories N",
        "command": command,
        "machine": results["device"],
        "date": time.strftime("%Y-%m-%d"),
        "columns": ["model", *(f"N = {n}" for n in ns), "EG vs FNO", "AG vs FNO", "EG vs scOT", "AG vs scOT"],
        "rows": [*rows, ["zero-shot (pretrained, no fine-tuning)", *([zero_shot] * len(ns)), "", "", "", ""]],
        "image": "img/" + FIGURE.name,
        "notes": [
            f"One-step relative L2 of the vorticity on {s['n_test']} held-out test trajectories (EG at N = {gain_at['EG_at']}, "
            f"AG at N = {gain_at['AG_at']}, Poseidon's eq. 11). Pretraining: {s['pretrain_n']} trajectories each of NS ν = 1e-3 "
            f"and 1e-4 (FNO forcing, a frame per time unit), decaying NS on [0, 2π]² (frames {s['heldout_dt']:g} apart, as the "
            f"held-out flow's) and diffusion–reaction, {s['pretrain_epochs']} epochs; every fine-tuning and scratch run "
            f"{s['epochs']} epochs, batch {s['batch_size']}, Adam {s['lr']:g} with a cosine schedule, relative-L2 loss; one seed. "
            f"Training time: pretraining {pretrain_seconds:.0f} s, the {len(runs)} fine-tuning and scratch runs {sum(runs):.0f} s "
            "summed (several at a time on the one device).",
            verdict,
        ],
        "by_model": False,
    }
    write_results([t], RESULTS)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "error_vs_n.png", FIGURE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="16² grid, a few trajectories, 2 epochs: the CPU check of the whole pipeline")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "pretrain_finetune")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ns", type=int, nargs="+", help="training trajectories of the held-out task (default: 8 32 128 512; tiny: 2 4 8)")
    parser.add_argument("--epochs", type=int, help="epochs of every fine-tuning and scratch run")
    parser.add_argument("--res", type=int, help="grid of every data set (default 64; tiny: 16)")
    parser.add_argument("--t-end", type=float, help="simulated time units of the Navier-Stokes sets: one frame each (default 20)")
    parser.add_argument("--pretrain-n", type=int, help="trajectories per pretraining member (default 1024)")
    parser.add_argument("--pretrain-epochs", type=int, help="epochs of pretraining (default 40)")
    parser.add_argument("--pretrain-batch-size", type=int, help="batch size of pretraining (default: the fine-tuning batch size)")
    parser.add_argument("--pretrain-only", action="store_true", help="stop once OUT/pretrain holds the pretrained run")
    parser.add_argument("--jobs", type=int, default=1, help="fine-tuning and scratch runs at once, each a process (they share the device)")
    parser.add_argument("--record-from", type=Path, metavar="RESULTS_JSON",
                        help="record a finished run's results.json (beside it: pretrain/metrics.json, error_vs_n.png) and exit")
    parser.add_argument("--record", action="store_true", help=f"put the table into {RESULTS.relative_to(REPO)} and the plot into docs/img")
    parser.add_argument("--only", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)  # one run: what --jobs starts
    args = parser.parse_args(argv)
    if args.record_from:  # the results of a run made elsewhere (a GPU machine), with the command that made them
        results = json.loads(args.record_from.read_text())
        record(results, args.record_from.parent, results["command"])
        return 0
    s = TINY if args.tiny else FULL
    if args.ns:
        s = replace(s, ns=tuple(sorted(args.ns)))
    given = {"epochs": args.epochs, "res": args.res, "t_end": args.t_end, "pretrain_n": args.pretrain_n, "pretrain_epochs": args.pretrain_epochs,
             "pretrain_batch_size": args.pretrain_batch_size}  # fmt: skip
    s = replace(s, **{k: v for k, v in given.items() if v is not None})
    if args.only:
        train_one(s, args.out, args.device, args.seed, args.only[0], int(args.only[1]))
        return 0
    argv = sys.argv[1:] if argv is None else argv
    child_args = [a for i, a in enumerate(argv) if a != "--jobs" and (i == 0 or argv[i - 1] != "--jobs")]
    command = " ".join(["python benchmarks/pretrain_finetune.py", *(a for a in argv if a != "--record")])
    results = run(s, args.out, args.device, args.seed, args.pretrain_only, args.jobs, child_args, command)
    if results is None:
        print(f"pretrained: {args.out / 'pretrain'}")
        return 0
    print(table(results))
    print(f"\n{results['device']}, {results['seconds']} s; results in {args.out}")
    if args.record:
        record(results, args.out, results["command"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
