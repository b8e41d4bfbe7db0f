"""Streamed operator splits: the same batches as in memory where a split is one chunk, every window once per epoch
otherwise, disjoint rank shards, per-pass file checks, one-line worker errors and the data.in_memory rule."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from sciformer.config import recipe_from_dict
from sciformer.data import operator
from sciformer.data.operator import load_operator_data
from sciformer.data.sources import memory, streaming
from sciformer.engine.distributed import Distributed, local_share
from sciformer.errors import DataError


def write_file(path, n=24, t=6, space=(8, 8), seed=0, bad=None):
    data = np.random.default_rng(seed).standard_normal((n, t, *space)).astype(np.float32)
    if bad is not None:
        data[bad] = np.nan
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=data, chunks=(1, t, *space))
        for ax, size in zip("xyz", space):
            f[f"{ax}-coordinate"] = np.linspace(0, 1, size, dtype=np.float32)
    return data


def load(path, in_memory, mode="one_step", chunk=0, workers=0, **train):
    recipe = recipe_from_dict({"data": {"name": str(path), "in_memory": in_memory, "initial_step": 2},
                               "model": {"name": "fno"}, "train": {"mode": mode, **train}})
    data = load_operator_data(recipe.data, recipe.train, allow_generate=False)
    for part in data.splits.values():
        if isinstance(part, streaming.StreamSplit):
            part.workers = workers
            if chunk:
                part.chunk = chunk
    return data


def epoch(data, seed=3, split="train", batch_size=5, **shard):
    generator = torch.Generator().manual_seed(seed)
    return list(data.batches(split, batch_size, shuffle=split == "train", generator=generator, **shard))


def rows(batches):
    """Every (input, target) row of some batches, as hashable bytes."""
    return sorted(u.numpy().tobytes() + y.numpy().tobytes() for b in batches for u, y in zip(b.u, b.y))


@pytest.mark.parametrize("mode, train", [("one_step", {}), ("unroll", {"unroll_steps": 2}), ("all_to_all", {}), ("one_step", {"augment": "dihedral"})])
def test_one_chunk_streams_exactly_the_in_memory_batches(tmp_path, mode, train):
    write_file(tmp_path / "a.h5")
    memory_data, streamed = load(tmp_path / "a.h5", True, mode, **train), load(tmp_path / "a.h5", False, mode, **train)
    assert not memory_data.streamed and streamed.streamed and streamed.fingerprint == memory_data.fingerprint
    for split in ("train", "val", "test"):
        a, b = epoch(memory_data, split=split), epoch(streamed, split=split)
        assert len(a) == len(b) == streamed.n_batches(split, 5)
        for x, y in zip(a, b):
            assert torch.equal(x.u, y.u) and torch.equal(x.y, y.y) and x.steps == y.steps
            assert (x.t is None and y.t is None) or torch.equal(x.t, y.t)


def test_many_chunks_cover_every_window_once_deterministically_per_epoch(tmp_path):
    write_file(tmp_path / "a.h5", n=30)
    whole, streamed = load(tmp_path / "a.h5", True), load(tmp_path / "a.h5", False, chunk=4, workers=1)
    first = epoch(streamed)
    assert rows(first) == rows(epoch(whole))  # every training window exactly once
    assert all(torch.equal(a.u, b.u) for a, b in zip(first, epoch(streamed)))  # the generator decides the order
    assert not all(torch.equal(a.u, b.u) for a, b in zip(first, epoch(streamed, seed=4)))
    assert [len(b.u) for b in first] == [len(b.u) for b in epoch(whole)]


def test_ranks_read_disjoint_chunks_and_their_shares_make_the_epoch(tmp_path, monkeypatch):
    write_file(tmp_path / "a.h5", n=40)
    streamed = load(tmp_path / "a.h5", False, chunk=3)
    reads: list[tuple[int, int]] = []
    original = streaming.StreamSplit.read
    monkeypatch.setattr(streaming.StreamSplit, "read", lambda self, a=0, b=None: reads.append((a, b)) or original(self, a, b))
    shares, chunks_read = [], []
    for rank in range(2):
        monkeypatch.setattr(operator, "_world", lambda rank=rank: (rank, 2))
        reads.clear()
        batches = epoch(streamed)
        ctx = Distributed(rank=rank, world_size=2)
        shares.append([local_share(b, ctx)[0] for b in batches])
        chunks_read.append(set(reads))
    assert len(shares[0]) == len(shares[1]) == streamed.n_batches("train", 5)  # the ranks step together
    assert rows(shares[0] + shares[1]) == rows(epoch(load(tmp_path / "a.h5", True)))
    assert len(chunks_read[0] & chunks_read[1]) <= 1  # at most the chunk at the ranks' border is read twice


def test_evaluation_shards_count_every_window_once(tmp_path):
    write_file(tmp_path / "a.h5", n=30)
    streamed = load(tmp_path / "a.h5", False, chunk=2)
    parts = [epoch(streamed, split="test", batch_size=2, rank=r, world_size=3) for r in range(3)]
    assert rows(parts[0] + parts[1] + parts[2]) == rows(epoch(streamed, split="test", batch_size=2))


def test_a_file_changed_between_epochs_stops_the_next_epoch(tmp_path):
    write_file(tmp_path / "a.h5")
    streamed = load(tmp_path / "a.h5", False)
    epoch(streamed)
    streamed.splits["train"].view.source.close()
    stamp = os.stat(tmp_path / "a.h5").st_mtime_ns
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f["tensor"][0] = 0.0
    os.utime(tmp_path / "a.h5", ns=(stamp + 10**9, stamp + 10**9))
    with pytest.raises(DataError, match=r"a\.h5: the data file changed while it was in use"):
        epoch(streamed)


def test_a_worker_reports_bad_data_as_one_line(tmp_path):
    write_file(tmp_path / "nan.h5", n=24, bad=(20, 3, 1, 1))
    streamed = load(tmp_path / "nan.h5", False, chunk=4, workers=1)
    with pytest.raises(DataError) as exc:
        epoch(streamed)
    assert str(exc.value).startswith(f"{tmp_path / 'nan.h5'}: dataset 'tensor' holds nan at sample 20, frame 3")
    assert "\n" not in str(exc.value) and "Traceback" not in str(exc.value)


def test_in_memory_rule_counts_process_limits(tmp_path, monkeypatch):
    write_file(tmp_path / "a.h5")  # 24 samples x 6 frames x 8 x 8 float32 = 36 kB
    monkeypatch.setattr(memory, "available_memory", lambda: 10**6)
    assert not load(tmp_path / "a.h5", "auto").streamed  # under a quarter
    monkeypatch.setattr(memory, "available_memory", lambda: 10**5)
    assert load(tmp_path / "a.h5", "auto").streamed
    monkeypatch.setattr(memory, "available_memory", lambda: 10**4)
    with pytest.raises(DataError, match=r"needs 0\.0 GiB in memory, more than .* set data\.in_memory=false"):
        load(tmp_path / "a.h5", True)


def test_available_memory_is_the_least_of_ram_cgroup_and_address_space(monkeypatch):
    monkeypatch.setattr(memory, "_physical", lambda: 64 * 2**30)
    monkeypatch.setattr(memory, "_cgroup_headroom", lambda: 2 * 2**30)
    monkeypatch.setattr(memory, "_address_space_headroom", lambda: None)
    assert memory.available_memory() == 2 * 2**30


def test_address_space_limit_is_read(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (8 * 2**30, resource.RLIM_INFINITY))
    assert 0 <= memory._address_space_headroom() < 8 * 2**30


def test_only_fit_may_generate_a_missing_file(tmp_path):
    recipe = recipe_from_dict({"data": {"name": str(tmp_path / "gen.h5"), "generate": {"generator": "burgers1d", "n": 4, "res": 16}},
                               "model": {"name": "fno"}}, check_data=False)
    with pytest.raises(DataError, match=r"gen\.h5' does not exist; only `sciformer fit` simulates data\.generate"):
        load_operator_data(recipe.data, recipe.train, allow_generate=False)
    assert not (tmp_path / "gen.h5").exists()


def test_streamed_training_matches_in_memory_training(tmp_path):
    from sciformer.engine.trainer import Trainer
    from sciformer.registry import build_model

    write_file(tmp_path / "a.h5", n=12, t=5, space=(8,))
    histories = []
    for in_memory in (True, False):
        data = load(tmp_path / "a.h5", in_memory)
        recipe = recipe_from_dict({"model": {"name": "fno", "modes": 2, "width": 4, "n_layers": 1},
                                   "data": {"name": str(tmp_path / "a.h5")}, "train": {"epochs": 2, "batch_size": 8, "progress": False}})
        torch.manual_seed(0)
        model = build_model("fno", recipe.model.args, **data.sizes())
        fit = Trainer(model, recipe.train, torch.device("cpu"), seed=1).fit(data)
        histories.append([(h["train_loss"], h["val_mse"]) for h in fit.history])
    assert histories[0] == histories[1]


class Crash(BaseException):
    """Stands in for a process dying mid-epoch: nothing on the way catches it."""


def test_a_streamed_run_resumed_mid_epoch_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    from sciformer.engine import trainer as trainer_module
    from sciformer.engine.trainer import Trainer
    from sciformer.registry import build_model

    write_file(tmp_path / "a.h5", n=20, t=5, space=(8,))
    recipe = recipe_from_dict({"model": {"name": "fno", "modes": 2, "width": 4, "n_layers": 1}, "data": {"name": str(tmp_path / "a.h5")},
                               "train": {"epochs": 2, "batch_size": 4, "progress": False, "patience": 0, "checkpoint_every": 3}})

    def run(state_dir, resume=False):
        data = load(tmp_path / "a.h5", False, chunk=3)  # several chunks: the order is the streamed one
        torch.manual_seed(0)
        model = build_model("fno", recipe.model.args, **data.sizes())
        return Trainer(model, recipe.train, torch.device("cpu"), seed=1, state_dir=state_dir).fit(data, resume=resume).history

    reference = run(tmp_path / "reference")
    save = trainer_module.Trainer._save

    def save_then_crash(self, progress, *args):
        save(self, progress, *args)
        if (progress.epoch, progress.step) == (1, 6):
            raise Crash

    monkeypatch.setattr(trainer_module.Trainer, "_save", save_then_crash)
    with pytest.raises(Crash):
        run(tmp_path / "state")
    monkeypatch.setattr(trainer_module.Trainer, "_save", save)
    resumed = run(tmp_path / "state", resume=True)
    strip = lambda history: [{k: v for k, v in row.items() if "seconds" not in k} for row in history]
    assert strip(resumed) == strip(reference)


def test_a_file_rewritten_during_a_run_stops_it_before_anything_more_is_saved(tmp_path):
    from sciformer.engine.callbacks import Callback, CallbackList
    from sciformer.engine.checkpoint import LATEST
    from sciformer.engine.trainer import Trainer
    from sciformer.registry import build_model

    path = tmp_path / "a.h5"
    write_file(path, n=12, t=4, space=(8,))
    data = load(path, False)
    recipe = recipe_from_dict({"model": {"name": "fno", "modes": 2, "width": 4, "n_layers": 1}, "data": {"name": str(path)},
                               "train": {"epochs": 3, "batch_size": 8, "progress": False, "patience": 0}})
    saved: list[int] = []

    class Rewrite(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:  # another program rewrites the file between epochs
                data.splits["train"].view.source.close()
                write_file(path, n=12, t=4, space=(8,), seed=1)
                stamp = os.stat(path).st_mtime_ns + 10**9
                os.utime(path, ns=(stamp, stamp))

    model = build_model("fno", recipe.model.args, **data.sizes())
    trainer = Trainer(model, recipe.train, torch.device("cpu"), callbacks=CallbackList([Rewrite()]), state_dir=tmp_path / "state",
                      on_best=lambda weights: saved.append(len(saved)))
    with pytest.raises(DataError, match=r"a\.h5: the data file changed while it was in use"):
        trainer.fit(data)
    assert (tmp_path / "state" / LATEST).read_text() == "epoch0001-step000000"  # the state of epoch 1, nothing after
    assert saved == [0]


def test_workers_persist_across_passes_and_an_abandoned_pass_leaves_no_stale_chunks(tmp_path):
    write_file(tmp_path / "a.h5", n=30)
    streamed = load(tmp_path / "a.h5", False, chunk=2, workers=1)
    first = next(iter(streamed.batches("test", 2)))  # a plot takes one batch and walks away
    whole = epoch(streamed, split="test", batch_size=2)
    loader = streamed.splits["test"]._loader
    assert torch.equal(first.u, whole[0].u) and rows(whole) == rows(epoch(load(tmp_path / "a.h5", True), split="test", batch_size=2))
    epoch(streamed, split="test", batch_size=2)
    assert streamed.splits["test"]._loader is loader  # the same worker processes served every pass


def test_a_zarr_store_streams_the_batches_its_hdf5_twin_gives_in_memory(tmp_path):
    pytest.importorskip("zarr")
    from sciformer.data.sources import XarraySource, open_source
    from sciformer.data.xarray_io import to_xarray

    data = write_file(tmp_path / "a.h5", n=12, t=5, space=(8,))
    to_xarray(data[:, :, None], coords={"t": np.arange(5.0)}).to_zarr(tmp_path / "a.zarr", zarr_format=2)  # format 3 warns of its metadata
    source = open_source(tmp_path / "a.zarr")
    assert isinstance(source, XarraySource) and (source.n_samples, source.n_frames, source.grid_shape) == (12, 5, (8,))
    np.testing.assert_array_equal(source.read([3], slice(1, 4))[0, :, 0], data[3, 1:4])
    in_memory, streamed = load(tmp_path / "a.h5", True), load(tmp_path / "a.zarr", False)
    assert streamed.streamed and not in_memory.streamed
    for split in ("train", "val", "test"):
        a, b = epoch(in_memory, split=split), epoch(streamed, split=split)
        assert len(a) == len(b) and all(torch.equal(x.u, y.u) and torch.equal(x.y, y.y) for x, y in zip(a, b))
