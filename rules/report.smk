# The README is rewritten between its markers but never declared as an output: Snakemake deletes a
# job's outputs before running it. tables.md (written last) is the rule's own record.


rule render_report:
    input:
        summary=REPORT.csv,
        readme=config["report"]["readme"],
        charts=[f"{CHARTS_DIR}/{model}/throughput.png" for model in MODELS],
    output:
        docs_summary=REPORT.docs_summary,
        tables=REPORT.tables_md,
    log:
        f"logs/{RUN}/render_report.log",
    benchmark:
        f"logs/{RUN}/benchmarks/render_report.tsv"
    localrule: True  # seconds of work on the submitting host; never queued
    conda:
        "../envs/analysis.yaml"
    params:
        run_name=RUN,
        charts_dir=lambda wildcards, input: os.path.dirname(
            os.path.dirname(input.charts[0])
        ),
        pivots=config["report"]["pivots"],
    script:
        "../scripts/report.py"


# After a failed run (with --keep-going the other cells finished): the tables still show every cell.
onerror:
    rebuild_report()
