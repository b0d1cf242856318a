import helpers

from ftbench.cell import Cell
from ftbench.plan.estimate import GB, MemoryEstimate
from ftbench.plan.preview import render

HW = {"gpus_per_node": 8}


def cell(gpus):
    return helpers.cell(gpus=gpus, precision="bf16", bs=4, seq=1024)


def test_preview_counts_nodes_and_gpu_hours_of_cells_still_to_run(tmp_path):
    done = tmp_path / "runs" / cell(8).id / "metrics.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    text = render([cell(8), cell(16), cell(32)], [(cell(3), "why")], HW, 3000, tmp_path)
    assert f"| {cell(16).id} | 2 x 8 | 1.00 | 16.00 | unknown until downloaded | to run |" in text
    assert f"| {cell(32).id} | 4 x 8 | 1.00 | 32.00 | unknown until downloaded | to run |" in text
    assert f"| {cell(8).id} | 1 x 8 | 1.00 | 8.00 | unknown until downloaded | done |" in text
    # 60 min = 50 min cell limit + 10 min start-up; the done cell costs nothing
    assert "2 of 3 selected cells to run (1 pruned), largest job 4 node(s); at most 48.0 GPU-hours" in text


def test_a_models_own_time_limit_prices_its_cells(tmp_path):
    other = Cell("big", "ddp", 8, "full", "bf16", 4, 1024, 32)
    text = render([cell(8), other], [], HW, 3000, tmp_path, model_timeouts={"big": 6600})
    assert f"| {cell(8).id} | 1 x 8 | 1.00 | 8.00 | unknown until downloaded | to run |" in text
    assert (
        f"| {other.id} | 1 x 8 | 2.00 | 16.00 | unknown until downloaded | to run |" in text
    )  # 110 min + 10 min start-up


def test_each_cell_shows_its_memory_estimate_against_the_devices(tmp_path):
    small = MemoryEstimate(runtime=0, parameters=30 * GB, gradients=0, optimizer=0, activations=2 * GB)
    large = MemoryEstimate(runtime=0, parameters=90 * GB, gradients=0, optimizer=0, activations=5 * GB)
    estimates = {cell(8).id: small, cell(16).id: large}
    text = render([cell(8), cell(16)], [], HW, 3000, tmp_path, estimates=estimates, capacity_gb=80)
    assert f"| {cell(8).id} | 1 x 8 | 1.00 | 8.00 | 32.00 | to run |" in text
    assert f"| {cell(16).id} | 2 x 8 | 1.00 | 16.00 | 95.00 (over 80) | to run |" in text
