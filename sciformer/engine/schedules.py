"""Learning-rate schedules: pure functions of (epoch, progress), so a resumed run needs no scheduler state."""

from __future__ import annotations

import math


def lr_factor(schedule: str, epoch: int, epochs: int, progress: float = 0.0) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based), ``progress`` ∈ [0, 1) within it.

    ``halve`` is TSLib's ``type1``: the factor is applied after each epoch starting with the first, which
    leaves the first two epochs at the base rate (lr, lr, lr/2, lr/4, ...). ``cosine`` decays per step. ``type3`` is
    the official PatchTST schedule (lr/25, lr, lr, lr, 0.9 lr, 0.81 lr, ...). ``onecycle`` is the Galerkin
    Transformer's (PyTorch's OneCycleLR with its defaults there): a cosine rise from lr/1e4 to lr over the first
    30% of the steps, then a cosine fall to lr/1e8, per step.
    """
    if schedule == "halve":
        return 0.5 ** max(0, epoch - 1)
    if schedule == "type3":
        # PatchTST's official run: OneCycleLR's initial rate lr/25 in the first epoch (the scheduler is built but
        # never stepped), then TSLib's type3 adjustment: lr for epochs 1-3, then x0.9 per epoch.
        return 1 / 25 if epoch == 0 else 0.9 ** max(0, epoch - 3)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch + progress) / epochs))
    if schedule == "onecycle":
        t, rise, start = (epoch + progress) / epochs, 0.3, 1e-4
        if t < rise:
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * t / rise))
        end = start * 1e-4
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * (t - rise) / (1.0 - rise)))
    return 1.0
