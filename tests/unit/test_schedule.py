"""The learning-rate schedule every strategy follows: linear warm-up, then constant or cosine."""

import itertools

import pytest
import torch

from ftbench.train import schedule

CFG = {"lr": 1e-3, "weight_decay": 0.0, "max_grad_norm": 1.0}


def test_unset_means_the_constant_lr_and_no_schedule():
    assert not schedule.scheduled(CFG)
    assert [schedule.lr_at(s, 10, CFG) for s in range(3)] == [1e-3] * 3


def test_warmup_rises_linearly_to_lr_then_holds():
    cfg = {**CFG, "warmup_steps": 4}
    assert schedule.scheduled(cfg)
    lrs = [schedule.lr_at(s, 10, cfg) for s in range(6)]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_cosine_decays_to_a_tenth_by_the_last_step():
    cfg = {**CFG, "warmup_steps": 2, "schedule": "cosine"}
    lrs = [schedule.lr_at(s, 12, cfg) for s in range(12)]
    assert lrs[2] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in itertools.pairwise(lrs[2:]))


def test_the_rate_reaches_the_optimizer_that_steps():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=1e-3)
    schedule.set_lr(opt, 2e-4)
    assert opt.param_groups[0]["lr"] == 2e-4
