"""Pretrain on a mixture, fine-tune from it (model.init): lineage, re-initialised layers, frozen backbone, errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sciformer.cli import main
from sciformer.config import load_recipe
from sciformer.engine.checkpoint import save_checkpoint
from sciformer.engine.losses import make_loss
from sciformer.engine.pretrained import apply_init, resolve_init
from sciformer.engine.runner import fit_recipe
from sciformer.engine.tasks import task_for
from sciformer.engine.tasks.operator import step_of
from sciformer.engine.trainer import seed_everything
from sciformer.errors import CheckpointError, ConfigError
from sciformer.registry import build_model

SMOKE = Path(__file__).resolve().parents[2] / "recipes" / "smoke"
PRETRAIN, FINETUNE = SMOKE / "pretrain_poseidon.yaml", SMOKE / "finetune_poseidon.yaml"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A folder with data/ (the smoke members, simulated once) and runs/pretrain (the smoke pretraining run)."""
    base = tmp_path_factory.mktemp("foundation")
    with contextlib.chdir(base):
        fit_recipe(load_recipe(PRETRAIN), base / "runs" / "pretrain")
    return base


@pytest.fixture
def here(pretrained, tmp_path) -> Path:
    """The test's own directory, seeing the module's simulated data files."""
    (tmp_path / "data").symlink_to(pretrained / "data")
    return tmp_path


def first_step_loss(recipe, init: bool) -> float:
    """The loss of the first training batch (the trainer's order) before any update."""
    task = task_for(recipe)
    data = task.load_data(recipe, allow_generate=True)
    seed_everything(recipe.seed)
    model = build_model(recipe.model.name, recipe.model.args, **task.data_sizes(data, recipe))
    if init:
        apply_init(model, resolve_init(recipe.model.init, recipe.model.name))
    batch = next(iter(data.batches("train", recipe.train.batch_size, shuffle=True, generator=torch.Generator().manual_seed(recipe.seed))))
    pred, target = step_of(data)(model.train(), batch)
    return make_loss(recipe.train)(pred.float(), target).item()


def test_finetuning_starts_below_scratch_and_records_lineage(pretrained, here, capsys):
    recipe = load_recipe(FINETUNE, [f"model.init={pretrained / 'runs' / 'pretrain'}", "train.epochs=1"])
    assert first_step_loss(recipe, init=True) < first_step_loss(recipe, init=False)
    capsys.readouterr()
    fit_recipe(recipe, here / "ft")
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("model.init:"))
    assert re.fullmatch(r"model\.init: \d+ tensors from '.*pretrain/checkpoint'", line)  # every tensor: nothing re-initialised
    lineage = json.loads((here / "ft" / "checkpoint" / "config.json").read_text())["init"]
    weights = pretrained / "runs" / "pretrain" / "checkpoint" / "weights.safetensors"
    assert lineage["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert lineage["checkpoint"] == str(weights.parent.resolve()) and lineage["model"] == "poseidon"


def test_other_channels_reinitialise_embedding_and_head_and_freeze_the_backbone(pretrained, here, capsys):
    member = pretrained / "data" / "smoke_ns2d_fno.h5"  # one channel, not the mixture's six
    overrides = [f"data.name={member}", "data.mixture=null", "data.mixture_channels=null", "train.epochs=1", "train.freeze_epochs=1",
                 f"model.init={pretrained / 'runs' / 'pretrain'}"]
    fit_recipe(load_recipe(FINETUNE, overrides), here / "ft")
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("model.init:"))
    assert "re-initialised (shapes differ): patch_embed.weight" in line and "recovery." in line
    before = load_file(pretrained / "runs" / "pretrain" / "checkpoint" / "weights.safetensors")
    after = load_file(here / "ft" / "checkpoint" / "weights.safetensors")
    assert torch.equal(before["encoders.0.blocks.0.attention.qkv.weight"], after["encoders.0.blocks.0.attention.qkv.weight"])  # frozen
    assert after["patch_embed.weight"].shape != before["patch_embed.weight"].shape


def test_init_pointing_at_nothing_or_a_foreign_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    for target, said in (("nowhere", "no such folder"), ("notes", "holds no sciformer checkpoint")):
        assert main(["fit", str(FINETUNE), f"model.init={target}", "--out", str(tmp_path / f"run-{target}")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"sciformer: error: model.init '{target}'") and said in err and "\n" not in err


def test_init_from_another_model_or_with_nothing_matching_is_refused(tmp_path):
    galerkin = build_model("galerkin", {}, in_channels=1, out_channels=1, n_dims=2)
    save_checkpoint(tmp_path / "galerkin", galerkin, {"model": {"name": "galerkin", "args": {}}})
    with pytest.raises(CheckpointError, match="is a checkpoint of model 'galerkin'; this recipe trains 'poseidon'"):
        resolve_init(str(tmp_path / "galerkin"), "poseidon")
    save_checkpoint(tmp_path / "foreign", {"other.weight": torch.zeros(3)}, {"model": {"name": "poseidon", "args": {}}})
    model = build_model("poseidon", {"embed_dim": 16, "depths": [1, 1], "n_heads": [2, 4], "skip_blocks": [1, 0], "patch_size": 2,
                                     "window_size": 4}, in_channels=1, out_channels=1, n_dims=2)
    with pytest.raises(CheckpointError, match="none of its 1 tensors matches"):
        apply_init(model, resolve_init(str(tmp_path / "foreign"), "poseidon"))


def test_freeze_epochs_needs_an_init():
    with pytest.raises(ConfigError, match=r"train\.freeze_epochs"):
        load_recipe(PRETRAIN, ["train.freeze_epochs=1"])


@pytest.mark.integration  # an MLflow store with a registered model
def test_init_from_a_registered_model_downloads_it_and_records_its_run(pretrained, here, monkeypatch):
    import mlflow

    from sciformer.api.pyfunc import log_run_model

    store = f"sqlite:///{here / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    with mlflow.start_run() as run:  # what `sciformer fit` logs; a user then registers it
        logged = log_run_model(pretrained / "runs" / "pretrain" / "checkpoint")
    mlflow.register_model(logged.model_uri, "scot-smoke")
    monkeypatch.setenv("XDG_CACHE_HOME", str(here / "cache"))
    args = ["fit", str(FINETUNE), "model.init=models:/scot-smoke/1", "train.epochs=1", "tracking.enabled=true", f"tracking.uri={store}"]
    assert main([*args, "--out", str(here / "ft")]) == 0
    lineage = json.loads((here / "ft" / "checkpoint" / "config.json").read_text())["init"]
    assert lineage["mlflow_model_uri"] == "models:/scot-smoke/1" and lineage["mlflow_run_id"] == run.info.run_id
    assert lineage["checkpoint"] == str(here / "cache" / "sciformer" / "models" / "scot-smoke" / "1" / "checkpoint")
    tags = mlflow.get_run(json.loads((here / "ft" / "mlflow_run.json").read_text())["run_id"]).data.tags
    assert tags["sciformer.init.mlflow_model_uri"] == "models:/scot-smoke/1"


class Crash(Exception):
    pass


@pytest.mark.integration  # three fine-tuning runs
def test_a_run_resumed_while_frozen_matches_an_uninterrupted_one(pretrained, here, monkeypatch):
    from sciformer.engine import trainer as trainer_module

    member = pretrained / "data" / "smoke_ns2d_fno.h5"
    overrides = [f"data.name={member}", "data.mixture=null", "data.mixture_channels=null", "train.epochs=2", "train.freeze_epochs=1",
                 "train.checkpoint_every=1", f"model.init={pretrained / 'runs' / 'pretrain'}"]  # fmt: skip
    recipe = load_recipe(FINETUNE, overrides)
    fit_recipe(recipe, here / "reference")
    save = trainer_module.Trainer._save

    def save_then_crash(self, progress, *args):  # dies in the frozen first epoch, after its first step
        save(self, progress, *args)
        if (progress.epoch, progress.step) == (0, 1):
            raise Crash

    monkeypatch.setattr(trainer_module.Trainer, "_save", save_then_crash)
    with pytest.raises(Crash):
        fit_recipe(recipe, here / "run")
    monkeypatch.setattr(trainer_module.Trainer, "_save", save)
    fit_recipe(recipe, here / "run", resume=True)
    reference, resumed = (load_file(here / name / "checkpoint" / "weights.safetensors") for name in ("reference", "run"))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_a_mixture_run_rolls_out_on_its_own_data_with_absent_fields_kept_zero(pretrained):
    from sciformer.engine.rollout import rollout_run

    with contextlib.chdir(pretrained):
        result = rollout_run(pretrained / "runs" / "pretrain", steps=2, out=pretrained / "mixture_rollout", figures=False)
    assert result["steps"] == 2 and result["samples"] > 0
    assert 0 < result["nrmse_mean"] < float("inf")  # absent fields (zero, predicted zero) have no nRMSE, not NaN
    import xarray as xr

    with xr.open_dataset(Path(result["out_dir"]) / "predictions.nc") as ds:
        channels = sum(name.startswith("pred_") for name in ds.data_vars)
        pred, truth = ([torch.as_tensor(ds[f"{kind}_{c}"].values) for c in range(channels)] for kind in ("pred", "true"))
    fields = channels // 2
    for field in range(fields):
        absent = truth[fields + field] == 0  # presence channel 0: the sample lacks that field
        assert (pred[field][absent] == 0).all()
    assert any((truth[fields + field] == 0).any() for field in range(fields))
