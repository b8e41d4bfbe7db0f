"""The five forecasters can be replayed from a CUDA graph: after a warm-up call, a training step (forward and
backward) and an evaluation forward read nothing back to the host and take no tensor from it.

A captured graph replays device work only, so a step that reads a value on the host (``.item()``, a shape that
depends on data, ``nonzero``) cannot be captured, and one that copies a fresh host tensor to the device (a key
sample drawn on the CPU) would replay the copy of the captured draw forever. The models run here on the ``meta``
device, where every such read fails or shows up as a host tensor entering an operation: what is checked is the
code path, in well under a second, without a GPU.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sciformer.nn.probsparse import ProbSparseAttention
from sciformer.registry import build_model

SMALL = dict(d_model=16, d_ff=32, n_heads=2)
FORECASTERS = {
    "autoformer": (dict(SMALL, factor=3), dict(lookback=96, label_len=48)),
    "informer": (dict(SMALL, factor=3, head_mixing="probsparse", cross_attention="probsparse"), dict(label_len=48)),
    "etsformer": (SMALL, dict(lookback=96)),
    "patchtst": (SMALL, dict(lookback=96)),
    "itransformer": (SMALL, dict(lookback=96)),
}
HOST_READS = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default)


class HostTraffic(TorchDispatchMode):
    """Records every operation that reads a device value on the host or takes a (non-scalar) host tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in HOST_READS:
            self.found.append(f"{func} reads a value on the host")
        for value in tree_flatten((args, kwargs))[0]:
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.dim() > 0:
                self.found.append(f"{func} takes a host tensor of shape {tuple(value.shape)}")
        return func(*args, **kwargs)


def build(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    args, sizes = FORECASTERS[name]
    sizes = dict(sizes, n_vars=3, horizon=24) | ({} if name == "patchtst" else {"n_marks": 4})
    torch.manual_seed(0)
    model = build_model(name, args, **sizes).to("meta")
    batch = (torch.empty(2, 96, 3, device="meta"), torch.empty(2, 96, 4, device="meta"), torch.empty(2, 24, 4, device="meta"))
    return model, batch


def host_traffic(model: torch.nn.Module, batch: tuple[torch.Tensor, ...], training: bool) -> list[str]:
    model.train(training)
    with torch.set_grad_enabled(training):
        model(*batch)  # warm-up: what a graph's warm-up runs eagerly (caches, lazily made constants)
        mode = HostTraffic()
        with mode:
            out = model(*batch)
            if training:
                out.sum().backward()
    return mode.found


def test_the_check_covers_the_five_forecasters():
    assert sorted(FORECASTERS) == ["autoformer", "etsformer", "informer", "itransformer", "patchtst"]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(FORECASTERS))
def test_a_step_reads_nothing_from_the_host(name, training):
    model, batch = build(name)
    assert host_traffic(model, batch, training) == []


def test_a_key_sample_drawn_on_the_cpu_is_found(monkeypatch):
    # the check itself: ProbSparse's sample drawn by a CPU generator and copied at every call is what it must catch
    def cpu_draw(self, n_queries, n_keys, n_sample, device):
        return torch.randint(n_keys, (n_queries, n_sample)).to(device)

    monkeypatch.setattr(ProbSparseAttention, "_sample_keys", cpu_draw)
    model, batch = build("informer")
    found = host_traffic(model, batch, training=True)
    assert found and all("_to_copy" in entry for entry in found)
