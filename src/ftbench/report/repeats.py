"""`repeats: N`: a cell's N runs (separate jobs) become its one metrics.json: the run with the median training
throughput, the median of each timed metric, and its spread (`<metric>_min`, `<metric>_max`)."""

from __future__ import annotations

import statistics

TIMED = [
    "train_tokens_per_s",
    "train_samples_per_s",
    "inference_tokens_per_s",
    "step_time_p50_s",
    "run_duration_s",
    "peak_memory_gb",
    "train_peak_memory_gb",
    "achieved_flops_per_s_per_gpu",
]


def merge(records: list[dict]) -> dict:
    """One record for the cell. A repeat that did not end ok makes the cell that status (first such repeat,
    with a note): a cell that OOMs one time in three is not a cell that fits."""
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        return {
            **failed[0],
            "repeats": len(records),
            "repeats_ok": len(records) - len(failed),
            "note": f"{len(failed)} of {len(records)} repeats ended {failed[0]['status']}",
        }
    order = sorted(range(len(records)), key=lambda i: records[i].get("train_tokens_per_s") or 0.0)
    median_index = order[(len(order) - 1) // 2]
    merged = {**records[median_index], "repeats": len(records), "repeats_ok": len(records)}
    merged["repeat_of_median"] = median_index
    merged["repeat_values"] = {}
    for metric in TIMED:
        values = [r[metric] for r in records if r.get(metric) is not None]
        if len(values) == len(records):
            merged[metric] = statistics.median(values)
            merged[f"{metric}_min"], merged[f"{metric}_max"] = min(values), max(values)
            merged["repeat_values"][metric] = values
    return merged
