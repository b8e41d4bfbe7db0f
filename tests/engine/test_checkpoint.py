import json

import pytest
import torch

from sciformer.engine.checkpoint import load_model, read_config, save_checkpoint
from sciformer.errors import CheckpointError
from sciformer.registry import build_model

SPEC = {"model": {"name": "itransformer", "args": {"d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1}, "data_sizes": {"n_vars": 3, "n_marks": 4, "lookback": 12, "horizon": 6}}}


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
    with pytest.raises(CheckpointError, match="weights.safetensors' is corrupt or truncated"):
        load_model(tmp_path / "ckpt")


def test_corrupt_config_raises_checkpoint_error(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json' is corrupt: not valid JSON"):
        load_model(tmp_path / "ckpt")


def test_missing_files_and_mismatched_weights(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
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
