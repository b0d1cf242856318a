import re

import numpy as np
import pytest
import torch

from ftbench.cell import Cell
from ftbench.train import loop


class Shard:
    def __init__(self, rank, world):
        self.data_rank, self.data_world = rank, world


def test_ranks_read_disjoint_shares_that_make_up_the_world1_batch():
    blocks = np.arange(40 * 4).reshape(40, 4)
    order = np.random.default_rng(0).permutation(40)
    one = Cell("m", "ddp", 1, "full", "fp32", 2, 4, 8)  # 4 micro-batches on one rank
    two = Cell("m", "ddp", 2, "full", "fp32", 2, 4, 8)  # 2 micro-batches on each of two ranks
    for step in (0, 3, 7):
        world1 = loop.rank_micro_batches(blocks, order, step, one, Shard(0, 1), torch.device("cpu"))
        world2 = [
            mb
            for rank in (0, 1)
            for mb in loop.rank_micro_batches(blocks, order, step, two, Shard(rank, 2), torch.device("cpu"))
        ]
        assert len(world1) == 4 and len(world2) == 4
        assert sorted(torch.cat(world1)[:, 0].tolist()) == sorted(torch.cat(world2)[:, 0].tolist())
        assert all(mb.shape == (2, 4) for mb in world1 + world2)


def test_steps_walk_the_epoch_order_then_wrap():
    order = np.array([3, 1, 4, 0, 2])
    assert loop.step_blocks(order, 0, 2).tolist() == [3, 1]
    assert loop.step_blocks(order, 2, 2).tolist() == [2, 3]


def test_not_enough_data_for_one_global_batch_names_the_cell():
    cell = Cell("m", "ddp", 2, "full", "fp32", 4, 64, 16)
    with pytest.raises(ValueError, match=r"cell m/ddp/2gpu/full-fp32-bs4-seq64: .* 10 blocks .* \(16\)"):
        loop.check_enough_data(10, cell)


def test_progress_lines_say_step_loss_throughput_and_time_left():
    from ftbench.train.loop import ProgressLog

    every = ProgressLog(total_steps=4, tokens_per_step=1000, every_s=0.0)
    line = every.step_done(0, torch.tensor(2.5))
    assert re.fullmatch(r"step 1/4: loss 2\.5000, [\d,]+ train tok/s, \d+ s left", line), line
    seldom = ProgressLog(total_steps=4, tokens_per_step=1000, every_s=3600.0)
    assert [seldom.step_done(s, torch.tensor(1.0)) is None for s in range(4)] == [True, True, True, False]
    assert ProgressLog(4, 1000, every_s=0.0, rank=1).step_done(3, torch.tensor(1.0)) is None  # rank 0 only
