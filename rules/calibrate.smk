# The measured matmul ceiling of one rank's share of the device, once per run (a run targets one kind of
# device). MFU is computed at aggregation, so re-calibrating never re-runs training.


rule calibrate_device:
    output:
        calibration=f"{RUN_DIR}/calibration.json",
    log:
        f"logs/{RUN}/calibrate_device.log",
    benchmark:
        f"logs/{RUN}/benchmarks/calibrate_device.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["hardware"]["cpu_threads_per_rank"]
    resources:
        train_jobs=1,
        nodes=calibration_resource("nodes"),
        gres=calibration_resource("gres"),
        cpus_per_task=calibration_resource("cpus_per_task"),
        mem_mb=calibration_resource("mem_mb"),
        runtime=calibration_resource("runtime"),
        tasks_per_gpu=calibration_resource("tasks_per_gpu"),
    params:
        device=config["hardware"]["device"],
        threads=config["hardware"]["cpu_threads_per_rank"],
    script:
        "../scripts/calibrate.py"
