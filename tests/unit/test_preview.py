import helpers

from ftbench.cell import Cell
from ftbench.plan.estimate import GB, MemoryEstimate
from ftbench.plan.preview import cell_states, render

HW = {"gpus_per_node": 8}


def cell(gpus):
    return helpers.cell(gpus=gpus, precision="bf16", bs=4, seq=1024)


def test_preview_counts_nodes_and_gpu_hours_of_cells_still_to_run():
    states = {cell(8).id: "done", cell(16).id: "params changed", cell(32).id: "new"}
    text = render([cell(8), cell(16), cell(32)], [(cell(3), "why")], HW, 3000, states)
    assert f"| {cell(16).id} | 2 x 8 | 1.00 | 16.00 | unknown until downloaded | params changed |" in text
    assert f"| {cell(32).id} | 4 x 8 | 1.00 | 32.00 | unknown until downloaded | new |" in text
    assert f"| {cell(8).id} | 1 x 8 | 1.00 | 8.00 | unknown until downloaded | done |" in text
    # 60 min = 50 min cell limit + 10 min start-up; the done cell costs nothing
    assert "2 of 3 selected cells to run (1 pruned), largest job 4 node(s); at most 48.0 GPU-hours" in text
    assert "By state: new 1, params changed 1, done 1." in text


def test_cell_states_read_snakemakes_summary_per_cell(tmp_path):
    """`snakemake --summary` rows (output, date, rule, log, status, plan): a missing output is new, or failed
    where its job left a log; a changed one says what changed; an existing one whose input is re-made runs
    too; repeats of one cell give its most telling state."""
    runs, logs = "results/r/runs", tmp_path / "logs"
    (logs / "m/ddp/1gpu/c").mkdir(parents=True)
    (logs / "m/ddp/1gpu/c/repeat-1.log").write_text("Traceback")
    rows = [
        ("m/ddp/1gpu/a", "missing", "update pending"),
        ("m/ddp/1gpu/b", "params changed", "update pending"),
        ("m/ddp/1gpu/c/repeat-0", "ok", "no update"),
        ("m/ddp/1gpu/c/repeat-1", "missing", "update pending"),
        ("m/ddp/1gpu/d", "ok", "update pending"),
        ("m/ddp/1gpu/e", "ok", "no update"),
        ("m/ddp/1gpu/f", "set of input files changed", "update pending"),
    ]
    summary = "output_file\tdate\trule\tlog-file(s)\tstatus\tplan\n" + "".join(
        f"{runs}/{job}/metrics.json\t-\ttrain_cell\t-\t{status}\t{plan}\n" for job, status, plan in rows
    )
    summary += "resources/models/m.0123456789ab/manifest.json\t-\tprepare_model\t-\tmissing\tupdate pending\n"
    assert cell_states(summary, "results/r", logs) == {
        "m/ddp/1gpu/a": "new",
        "m/ddp/1gpu/b": "params changed",
        "m/ddp/1gpu/c": "failed",
        "m/ddp/1gpu/d": "input changed",
        "m/ddp/1gpu/e": "done",
        "m/ddp/1gpu/f": "input changed",
    }


def test_a_models_own_time_limit_prices_its_cells():
    other = Cell("big", "ddp", 8, "full", "bf16", 4, 1024, 32)
    text = render([cell(8), other], [], HW, 3000, {}, model_timeouts={"big": 6600})
    assert f"| {cell(8).id} | 1 x 8 | 1.00 | 8.00 | unknown until downloaded | new |" in text
    assert f"| {other.id} | 1 x 8 | 2.00 | 16.00 | unknown until downloaded | new |" in text  # 110 + 10 min


def test_each_cell_shows_its_memory_estimate_against_the_devices():
    small = MemoryEstimate(runtime=0, parameters=30 * GB, gradients=0, optimizer=0, activations=2 * GB)
    large = MemoryEstimate(runtime=0, parameters=90 * GB, gradients=0, optimizer=0, activations=5 * GB)
    estimates = {cell(8).id: small, cell(16).id: large}
    text = render([cell(8), cell(16)], [], HW, 3000, {}, estimates=estimates, capacity_gb=80)
    assert f"| {cell(8).id} | 1 x 8 | 1.00 | 8.00 | 32.00 | new |" in text
    assert f"| {cell(16).id} | 2 x 8 | 1.00 | 16.00 | 95.00 (over 80) | new |" in text
