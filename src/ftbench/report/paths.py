"""The report chain's files for one run, declared once: the rules' inputs and outputs and the `onerror`
rebuild (ftbench.report.tables.rebuild) both take them from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportPaths:
    calibration: str
    """The device's measured matmul ceiling (calibrate_device), the MFU denominator."""
    parquet: str
    csv: str
    """The summary, one row per cell (aggregate_metrics)."""
    docs_summary: str
    """The committed copy of the summary the README tables are rendered from."""
    tables_md: str
    """The rendered tables (render_report's own record; the README is rewritten between markers)."""
    charts_dir: str
    """docs/<run_name>/charts: a directory per model."""

    @classmethod
    def of_run(cls, run_name: str, docs_dir: str) -> ReportPaths:
        run_dir = f"results/{run_name}"
        return cls(
            calibration=f"{run_dir}/calibration.json",
            parquet=f"{run_dir}/summary.parquet",
            csv=f"{run_dir}/summary.csv",
            docs_summary=f"{docs_dir}/{run_name}/summary.csv",
            tables_md=f"{run_dir}/tables.md",
            charts_dir=f"{docs_dir}/{run_name}/charts",
        )
