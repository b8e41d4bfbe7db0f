import pytest
import torch
from conftest import write_csv

from sciformer.config import TrainConfig, recipe_from_dict
from sciformer.data.timeseries import TimeSeriesData, read_frame
from sciformer.engine.runner import fit_recipe
from sciformer.engine.trainer import Trainer, fused_adam_possible, lr_factor
from sciformer.registry import build_model


def test_halve_schedule_matches_tslib_type1():
    # TSLib adjusts after every epoch with factor 0.5 ** (epoch - 1), epoch counted from 1 -> lr, lr, lr/2, lr/4
    assert [lr_factor("halve", e, 10) for e in range(5)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 7, 10) == 1.0
    assert [lr_factor("type3", e, 100) for e in range(6)] == pytest.approx([1 / 25, 1, 1, 1, 0.9, 0.81])


def test_cuda_graphs_setting_is_silently_eager_on_cpu(recwarn):
    model = torch.nn.Linear(3, 3)
    trainer = Trainer(model, TrainConfig(cuda_graphs=True), torch.device("cpu"))
    assert not trainer.use_graphs and not [w for w in recwarn if "cuda_graphs" in str(w.message)]
    assert trainer.cuda_graphs == "off"  # what metrics.json records


def test_a_run_records_whether_its_steps_were_captured_or_fell_back():
    from types import SimpleNamespace

    trainer = Trainer(torch.nn.Linear(3, 3), TrainConfig(), torch.device("cpu"))
    trainer._train_graph = SimpleNamespace(failed=False, graph=object())
    assert trainer.cuda_graphs == "captured"
    trainer._train_graph = SimpleNamespace(failed=True, graph=None)
    assert trainer.cuda_graphs == "failed"
    trainer._train_graph = SimpleNamespace(failed=False, graph=None)  # no full batch reached the capture
    assert trainer.cuda_graphs == "off"


def test_cuda_graphs_are_the_forecasters_default_on_one_gpu_and_off_when_asked_or_distributed():
    from types import SimpleNamespace

    def possible(cfg: TrainConfig, device: str = "cuda", distributed: bool = False, task: str = "forecast") -> bool:
        trainer = SimpleNamespace(cfg=cfg, device=torch.device(device), dist=SimpleNamespace(enabled=distributed), model=SimpleNamespace(task=task))
        return Trainer._graphs_possible(trainer)

    assert TrainConfig().cuda_graphs is None and possible(TrainConfig())
    assert not possible(TrainConfig(), task="operator") and possible(TrainConfig(cuda_graphs=True), task="operator")
    assert not possible(TrainConfig(cuda_graphs=False)) and not possible(TrainConfig(), "cpu") and not possible(TrainConfig(), distributed=True)
    assert not possible(TrainConfig(freeze_epochs=1))


def test_tf32_precision_trains_in_float32_on_a_cpu_and_leaves_torchs_switches_alone():
    before = torch.backends.cuda.matmul.allow_tf32
    trainer = Trainer(torch.nn.Linear(3, 3), TrainConfig(precision="tf32"), torch.device("cpu"))
    assert torch.backends.cuda.matmul.allow_tf32 == before and not trainer.use_graphs


def test_onecycle_schedule_follows_pytorchs_onecyclelr():
    # the Galerkin Transformer's OneCycleLR(max_lr=lr, div_factor=1e4, final_div_factor=1e4), pct_start 0.3
    epochs, steps = 10, 100
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, div_factor=1e4, final_div_factor=1e4, epochs=epochs, steps_per_epoch=steps)
    theirs, ours = [], []
    for epoch in range(epochs):
        for i in range(steps):
            theirs.append(optimizer.param_groups[0]["lr"])
            ours.append(lr_factor("onecycle", epoch, epochs, i / steps))
            optimizer.step()
            scheduler.step()
    assert ours[0] == pytest.approx(1e-4) and max(ours) == pytest.approx(1.0) and ours[-1] < 1e-3
    assert ours == pytest.approx(theirs, abs=5e-3)  # PyTorch ends each phase one step earlier


def _data(tmp_path, n_rows=400):
    return TimeSeriesData(read_frame(write_csv(tmp_path / "s.csv", n_rows=n_rows)), lookback=24, horizon=12)


def _model(data):
    return build_model("itransformer", {"d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1},
                       n_vars=data.n_vars, n_marks=data.n_marks, lookback=24, horizon=12)


def test_training_reduces_validation_loss_and_restores_best(tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path)
    trainer = Trainer(_model(data), TrainConfig(epochs=4, batch_size=32, lr=3e-3, lr_schedule="constant", patience=0, progress=False), torch.device("cpu"))
    before = trainer.evaluate(data, "val")["mse"]
    result = trainer.fit(data)
    best = min(h["val_loss"] for h in result.history)
    assert best < before
    assert trainer.evaluate(data, "val")["mse"] == pytest.approx(best, rel=1e-6)  # best weights restored
    assert result.history[result.best_epoch - 1]["val_loss"] == best


def test_early_stopping_with_patience(tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path)
    # a learning rate of ~0 cannot improve after the first epoch, so patience 2 stops at epoch 3
    trainer = Trainer(_model(data), TrainConfig(epochs=10, batch_size=64, lr=1e-12, lr_schedule="constant", patience=2, progress=False), torch.device("cpu"))
    result = trainer.fit(data)
    assert result.epochs == 3 and result.best_epoch == 1


def test_grad_clip_and_bf16_autocast_run(tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path)
    cfg = TrainConfig(epochs=1, batch_size=64, grad_clip=0.1, precision="bf16", progress=False)
    result = Trainer(_model(data), cfg, torch.device("cpu")).fit(data)
    assert result.epochs == 1 and torch.isfinite(torch.tensor(result.history[0]["train_loss"]))


def test_same_seed_gives_identical_metrics(tmp_path):
    path = write_csv(tmp_path / "s.csv", n_rows=400)
    raw = {
        "data": {"name": str(path), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
        "tracking": {"enabled": False},
        "seed": 7,
    }
    a = fit_recipe(recipe_from_dict(raw), tmp_path / "a").metrics
    b = fit_recipe(recipe_from_dict(raw), tmp_path / "b").metrics
    c = fit_recipe(recipe_from_dict({**raw, "seed": 8}), tmp_path / "c").metrics
    assert (a["test_mse"], a["test_mae"], a["val_mse"]) == (b["test_mse"], b["test_mae"], b["val_mse"])
    assert a["test_mse"] != c["test_mse"]


# ------------------------------------------------------------------------------------- CUDA graphs
class _FakeGraph:
    """Stands in for torch.cuda.CUDAGraph on a CPU: capture records which step was captured and undoes what
    running it did (a real capture executes nothing); replay runs the captured step on its static batch and
    writes the results into the static outputs, as a real replay does."""

    replays = 0

    def __init__(self):
        self.step = None

    def replay(self):
        _FakeGraph.replays += 1
        out = self.step.fn(self.step.static_batch)
        static = self.step.static_out
        for target, value in zip(static if isinstance(static, tuple) else (static,), out if isinstance(out, tuple) else (out,)):
            if isinstance(target, torch.Tensor):
                target.copy_(value)


def _fake_cuda(monkeypatch, trainer_state):
    import contextlib
    import sys

    @contextlib.contextmanager
    def graph(g, *args, **kwargs):
        g.step = sys._getframe(2).f_locals["self"]  # the CudaGraphStep capturing
        saved = [t.detach().clone() for t in trainer_state()]
        yield
        for t, value in zip(trainer_state(), saved):
            t.detach().copy_(value)  # a capture records, it does not run

    class Stream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())


def test_cuda_graph_steps_replay_the_eager_computation(tmp_path, monkeypatch):
    """The graph plumbing (static batches, device learning rate, warm-up, eager last batch) on a fake graph."""
    from sciformer.engine import trainer as trainer_module

    data = _data(tmp_path)  # 245 training windows: 7 batches of 32 and a last one of 21; 29 validation windows
    cfg = dict(epochs=2, batch_size=32, eval_batch_size=8, lr=3e-3, lr_schedule="cosine", patience=0, progress=False, fused_optimizer=True)
    model = lambda: build_model("itransformer", {"d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1, "dropout": 0.0},
                                n_vars=data.n_vars, n_marks=data.n_marks, lookback=24, horizon=12)
    torch.manual_seed(0)
    eager = Trainer(model(), TrainConfig(**cfg), torch.device("cpu"))
    eager_fit = eager.fit(data)

    monkeypatch.setattr(trainer_module.Trainer, "_graphs_possible", lambda self: True)
    torch.manual_seed(0)
    graphed = Trainer(model(), TrainConfig(**cfg, cuda_graphs=True), torch.device("cpu"))

    def state():
        tensors = list(graphed.model.parameters())
        for s in graphed.optimizer.state.values():
            tensors += [v for v in s.values() if isinstance(v, torch.Tensor)]
        return tensors

    _fake_cuda(monkeypatch, state)
    _FakeGraph.replays = 0
    graphed_fit = graphed.fit(data)
    assert isinstance(graphed.optimizer.param_groups[0]["lr"], torch.Tensor)
    # train: 7 full batches per epoch (+1 eager), the first 3 warm up; val: 3 full batches of 8 (+1 eager) per epoch
    assert graphed._train_graph.graph is not None and graphed._eval_graph.graph is not None
    assert _FakeGraph.replays == (2 * 7 - 3) + (2 * 3 - 3)
    assert [h["val_loss"] for h in graphed_fit.history] == pytest.approx([h["val_loss"] for h in eager_fit.history], rel=1e-6)
    assert [h["train_loss"] for h in graphed_fit.history] == pytest.approx([h["train_loss"] for h in eager_fit.history], rel=1e-6)


def test_fused_adam_only_for_real_parameters_on_cuda():
    real = torch.nn.Linear(3, 2)
    spectral = torch.nn.Linear(3, 2)
    spectral.weights = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.complex64))  # like FNO's spectral weights
    assert fused_adam_possible(real, torch.device("cuda"))
    assert not fused_adam_possible(spectral, torch.device("cuda"))
    assert not fused_adam_possible(real, torch.device("cpu"))
