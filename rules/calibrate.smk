# The measured matmul ceiling of one rank's share of the device, once per run (a run targets one kind of
# device). MFU is computed at aggregation, so re-calibrating never re-runs training.


rule calibrate_device:
    output:
        calibration=REPORT.calibration,
    log:
        f"logs/{RUN}/calibrate_device.log",
    benchmark:
        f"logs/{RUN}/benchmarks/calibrate_device.tsv"
    conda:
        TRAIN_ENV
    threads: config["hardware"]["cpu_threads_per_rank"]
    resources:
        **rule_resources.calibration(config),
        train_jobs=1,
    params:
        device=config["hardware"]["device"],
        threads=config["hardware"]["cpu_threads_per_rank"],
        precisions=precision.calibrated(config["matrix"]["precision"]),
    script:
        "../scripts/calibrate.py"
