"""Compare a run's summary with a reference summary (another run, another cluster): the ratio of each metric
per cell, changes beyond a threshold flagged (ReFrame-style references), optionally a failing exit code.

    python -m ftbench.report.compare results/new/summary.csv results/old/summary.csv [--threshold 0.1] [--gate]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ftbench.files import atomic_write_text

# (summary column, header, True when higher is better)
METRICS = [
    ("train_tokens_per_s", "train tok/s", True),
    ("inference_tokens_per_s", "inference tok/s", True),
    ("peak_memory_gb", "memory", False),
    ("step_time_p50_s", "step p50", False),
    ("eval_loss", "eval loss", False),
]


@dataclass
class Comparison:
    rows: list[dict]
    regressions: list[str]
    improvements: list[str]


def compare(new: pl.DataFrame, ref: pl.DataFrame, threshold: float) -> Comparison:
    """Every cell of either summary: ratios new/ref, and what moved beyond `threshold` (relative)."""
    reference = {r["cell_id"]: r for r in ref.iter_rows(named=True)}
    current = {r["cell_id"]: r for r in new.iter_rows(named=True)}
    result = Comparison([], [], [])
    for cell_id in [*current, *(c for c in reference if c not in current)]:
        now, was = current.get(cell_id), reference.get(cell_id)
        row = {"cell_id": cell_id, "status": _status_change(now, was), "ratios": {}, "flags": []}
        if now and was and was["status"] == "ok" and now["status"] != "ok":
            row["flags"].append(f"status {was['status']} → {now['status']}")
            result.regressions.append(f"{cell_id}: status {was['status']} → {now['status']}")
        if now and was and now["status"] == was["status"] == "ok":
            for column, header, higher_is_better in METRICS:
                a, b = now.get(column), was.get(column)
                if a is None or b is None or b == 0:
                    continue
                ratio = a / b
                row["ratios"][header] = ratio
                better = ratio > 1 + threshold if higher_is_better else ratio < 1 - threshold
                worse = ratio < 1 - threshold if higher_is_better else ratio > 1 + threshold
                if worse or better:
                    what = f"{header} ×{ratio:.2f}"
                    row["flags"].append(("regression: " if worse else "improvement: ") + what)
                    (result.regressions if worse else result.improvements).append(f"{cell_id}: {what}")
        result.rows.append(row)
    return result


def _status_change(now: dict | None, was: dict | None) -> str:
    if now is None:
        return f"only in reference ({was['status']})"
    if was is None:
        return f"new ({now['status']})"
    return now["status"] if now["status"] == was["status"] else f"{was['status']} → {now['status']}"


def render(result: Comparison, new_name: str, ref_name: str, threshold: float) -> str:
    headers = [h for _, h, _ in METRICS]
    lines = [
        f"Run `{new_name}` against `{ref_name}`: ratio new / reference per cell; changes beyond "
        f"{threshold:.0%} are flagged (higher is better for tok/s, lower for memory, step time and loss).",
        "",
        "| cell | status | " + " | ".join(headers) + " | flags |",
        "|" + "|".join("---" for _ in range(len(headers) + 3)) + "|",
    ]
    for row in result.rows:
        ratios = [f"{row['ratios'][h]:.3f}" if h in row["ratios"] else "—" for h in headers]
        flags = "; ".join(row["flags"]) or "—"
        lines.append(f"| {row['cell_id']} | {row['status']} | " + " | ".join(ratios) + f" | {flags} |")
    lines += ["", f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path, help="this run's summary.csv")
    parser.add_argument("reference", type=Path, help="the reference summary.csv")
    parser.add_argument("--threshold", type=float, default=0.1, help="relative change that is flagged")
    parser.add_argument("--gate", action="store_true", help="exit 1 when a regression is flagged")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    for path in (args.new, args.reference):
        if not path.is_file():
            parser.error(f"no summary at {path} (a summary.csv from results/<run_name>/ or docs/<run_name>/)")
    read = lambda p: pl.read_csv(p, infer_schema_length=None)  # noqa: E731
    result = compare(read(args.new), read(args.reference), args.threshold)
    text = render(result, str(args.new), str(args.reference), args.threshold)
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    if args.gate and result.regressions:
        print("regressions beyond the threshold:\n  " + "\n  ".join(result.regressions), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
