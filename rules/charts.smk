# Charts of each model (altair; PNG and SVG through vl-convert, interactive HTML) and its table, kept
# under docs/ beside the summary and registered for `snakemake --report report.html` (a category per model).
rule render_charts:
    input:
        summary=REPORT.csv,
    output:
        throughput=report(
            f"{CHARTS_DIR}/{{model}}/throughput.png",
            caption="../report/charts.rst",
            category="{model}",
            labels={"chart": "training throughput"},
        ),
        scaling=report(
            f"{CHARTS_DIR}/{{model}}/scaling.png",
            caption="../report/charts.rst",
            category="{model}",
            labels={"chart": "scaling efficiency"},
        ),
        memory=report(
            f"{CHARTS_DIR}/{{model}}/memory.png",
            caption="../report/charts.rst",
            category="{model}",
            labels={"chart": "peak memory per GPU"},
        ),
        mfu=report(
            f"{CHARTS_DIR}/{{model}}/mfu.png",
            caption="../report/charts.rst",
            category="{model}",
            labels={"chart": "MFU"},
        ),
        table=report(
            f"{CHARTS_DIR}/{{model}}/table.csv",
            caption="../report/table.rst",
            category="{model}",
            labels={"chart": "table"},
        ),
        svg_html=[
            f"{CHARTS_DIR}/{{model}}/{kind}.{fmt}"
            for kind in ("throughput", "scaling", "memory", "mfu")
            for fmt in ("svg", "html")
        ],
    log:
        f"logs/{RUN}/render_charts/{{model}}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/render_charts/{{model}}.tsv"
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        # docs/<run>/charts: the model's directory is the wildcard's
        out_dir=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.throughput)
        ),
    script:
        "../scripts/charts.py"
