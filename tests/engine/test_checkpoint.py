import json
import random

import pytest
import torch

from sciformer.engine.checkpoint import (
    LATEST,
    find_checkpoint,
    load_model,
    load_training_state,
    read_config,
    read_run_config,
    save_checkpoint,
    save_training_state,
)
from sciformer.errors import CheckpointError
from sciformer.registry import build_model

SPEC = {"model": {"name": "itransformer", "args": {"d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
                  "data_sizes": {"n_vars": 3, "n_marks": 4, "lookback": 12, "horizon": 6}}}


def _model():
    return build_model("itransformer", SPEC["model"]["args"], **SPEC["model"]["data_sizes"])


def test_checkpoint_is_a_directory_of_safetensors_and_json(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "weights.safetensors"]
    config = read_config(tmp_path / "ckpt")
    assert config["sciformer_version"] and config["model"]["name"] == "itransformer"


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    first, second = _model(), _model()
    save_checkpoint(tmp_path / "ckpt", first, SPEC)
    save_checkpoint(tmp_path / "ckpt", second, SPEC)
    loaded, _ = load_model(tmp_path / "ckpt")
    for a, b in zip(loaded.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_truncated_weights_raise_checkpoint_error(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    weights = tmp_path / "ckpt" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"weights.safetensors' is corrupt or truncated"):
        load_model(tmp_path / "ckpt")


def test_corrupt_config_raises_checkpoint_error(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json' is corrupt: not valid JSON"):
        load_model(tmp_path / "ckpt")


def test_missing_files_and_mismatched_weights(tmp_path):
    with pytest.raises(CheckpointError, match=r"has no config.json"):
        load_model(tmp_path)
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    bigger = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    bigger["model"]["args"]["d_model"] = 16
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(CheckpointError, match="does not match model 'itransformer'"):
        load_model(tmp_path / "ckpt")


def test_weights_are_never_unpickled(tmp_path):
    # a pickle in place of the safetensors file must be rejected, not executed
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    torch.save({"x": torch.zeros(1)}, tmp_path / "ckpt" / "weights.safetensors")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "ckpt")


# ------------------------------------------------------------------------------------ training state
def _state():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 12, 3), torch.randn(2, 12, 4), torch.randn(2, 6, 4)).square().mean().backward()
    optimizer.step()
    return model, optimizer, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "best": None,
                              "progress": {"epoch": 2, "best_loss": float("inf"), "history": [{"epoch": 1, "val_loss": 0.5}]},
                              "python_rng": random.getstate()}


def test_training_state_round_trips_tensors_tuples_int_keys_and_infinity(tmp_path):
    model, optimizer, state = _state()
    save_training_state(tmp_path / "resume", "epoch0002-step000000", state)
    loaded = load_training_state(tmp_path / "resume")
    assert loaded["progress"] == state["progress"] and loaded["best"] is None
    assert loaded["python_rng"] == random.getstate()  # nested tuples come back as tuples
    assert set(loaded["optimizer"]["state"]) == set(optimizer.state_dict()["state"])  # int keys stay ints
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    fresh = torch.optim.Adam(_model().parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    for a, b in zip(fresh.state_dict()["state"][0].values(), optimizer.state_dict()["state"][0].values()):
        assert torch.equal(a, b)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)


def test_latest_names_the_newest_complete_state_and_older_ones_are_removed(tmp_path):
    _, _, state = _state()
    assert load_training_state(tmp_path / "resume") is None  # nothing written yet
    save_training_state(tmp_path / "resume", "epoch0001-step000000", {**state, "n": 1})
    (tmp_path / "resume" / ".epoch0002-step000000.tmpabc").mkdir()  # a write that a crash interrupted
    save_training_state(tmp_path / "resume", "epoch0002-step000000", {**state, "n": 2})
    assert (tmp_path / "resume" / LATEST).read_text() == "epoch0002-step000000"
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == [LATEST, "epoch0002-step000000"]
    save_training_state(tmp_path / "resume", "epoch0002-step000000", {**state, "n": 3})  # the same name again
    assert load_training_state(tmp_path / "resume")["n"] == 3


def test_damaged_training_state_names_the_file(tmp_path):
    _, _, state = _state()
    folder = save_training_state(tmp_path / "resume", "epoch0001-step000000", state)
    tensors = folder / "state.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"'{tensors}' is corrupt or truncated"):
        load_training_state(tmp_path / "resume")
    (folder / "state.json").write_text("[]")
    with pytest.raises(CheckpointError, match="has no training state"):
        load_training_state(tmp_path / "resume")
    (tmp_path / "resume" / LATEST).write_text("gone")
    with pytest.raises(CheckpointError, match="names 'gone'"):
        load_training_state(tmp_path / "resume")


def test_altered_weights_fail_their_recorded_sha256(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    weights = tmp_path / "ckpt" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # still a well-formed file: only the checksum can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights.safetensors' is corrupt or truncated .*sha256"):
        load_model(tmp_path / "ckpt")


def test_a_run_killed_between_the_two_renames_keeps_its_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "run" / "checkpoint", _model(), SPEC)
    (tmp_path / "run" / "checkpoint").rename(tmp_path / "run" / ".checkpoint.old")  # the state between the renames
    found = find_checkpoint(tmp_path / "run")
    assert found.name == ".checkpoint.old" and load_model(found)[1]["model"]["name"] == "itransformer"
    save_checkpoint(tmp_path / "run" / "checkpoint", _model(), SPEC)
    assert find_checkpoint(tmp_path / "run").name == "checkpoint"


@pytest.mark.parametrize("damage,message", [
    (lambda c: c["model"].pop("name"), r"'model' must be a mapping with a string 'name'"),
    (lambda c: c["model"].update(args=[1]), r"'model.args' must be a mapping"),
    (lambda c: c.update(recipe="x"), r"'recipe' must be a mapping"),
    (lambda c: c.update(data={"columns": ["a"], "fingerprint": "f"}), r"the timeseries data entry lacks \['scaler'\]"),
    (lambda c: c.update(data={"kind": "operator", "mode": "one_step"}), r"the operator data entry lacks \['initial_step', 'grid'\]"),
])
def test_a_damaged_config_is_a_checkpoint_error_naming_the_file(tmp_path, damage, message):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    damage(config)
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"ckpt/config\.json' is damaged or was not written by sciformer: " + message):
        load_model(tmp_path / "ckpt")


def test_a_bare_model_checkpoint_is_not_a_run(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    with pytest.raises(CheckpointError, match=r"has no \['recipe', 'data'\] entry: it is a bare model"):
        read_run_config(tmp_path / "ckpt")
