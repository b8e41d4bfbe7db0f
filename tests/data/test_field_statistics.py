"""Per-channel statistics of an operator data set's training split (``model.normalize``)."""

import torch

from sciformer.data.operator import OperatorData, SplitTensors


def _moments(t: torch.Tensor, dim_channel: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = t.double().movedim(dim_channel, 0).flatten(1)
    return c.mean(1).float(), c.std(1, unbiased=False).float()


def test_trajectory_statistics_are_the_fields_and_the_inputs_take_them_for_every_frame():
    torch.manual_seed(0)
    traj = torch.randn(6, 5, 2, 8, 8) * torch.tensor([3.0, 0.5]).view(1, 1, 2, 1, 1) + torch.tensor([1.0, -2.0]).view(1, 1, 2, 1, 1)
    data = OperatorData({s: SplitTensors(trajectories=traj) for s in ("train", "val", "test")}, initial_step=2)
    in_mean, in_std, out_mean, out_std = data.field_statistics(max_samples=10_000, batch_size=4)
    # the targets of the one-step windows are frames 2..4 of every trajectory
    mean, std = _moments(traj[:, 2:], dim_channel=2)
    torch.testing.assert_close(out_mean, mean)
    torch.testing.assert_close(out_std, std)
    torch.testing.assert_close(in_mean, mean.repeat(2))  # two frames of two fields, time-major
    torch.testing.assert_close(in_std, std.repeat(2))


def test_steady_pairs_get_input_and_target_statistics_and_a_constant_channel_keeps_scale_one():
    torch.manual_seed(0)
    a = torch.randn(10, 2, 4, 4) * 5
    a[:, 1] = 7.0  # constant: no spread to divide by
    data = OperatorData({s: SplitTensors(inputs=a, targets=a[:, :1] * 2 + 3) for s in ("train", "val", "test")})
    in_mean, in_std, out_mean, out_std = data.field_statistics(max_samples=4, batch_size=4)  # the first 4 pairs only
    mean, std = _moments(a[:4], dim_channel=1)
    torch.testing.assert_close(in_mean, mean)
    assert in_std[0] == std[0] and in_std[1] == 1.0
    torch.testing.assert_close(out_mean, mean[:1] * 2 + 3)
    torch.testing.assert_close(out_std, std[:1] * 2)


def test_lead_time_pairs_are_drawn_without_touching_the_global_random_stream():
    traj = torch.randn(4, 6, 1, 8, 8)
    data = OperatorData({s: SplitTensors(trajectories=traj) for s in ("train", "val", "test")}, mode="all_to_all")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    data.field_statistics()
    assert torch.equal(torch.rand(3), expected)
