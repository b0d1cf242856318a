import subprocess

import torch

from ftbench.train import provenance


def test_collect_names_versions_hardware_and_job(tmp_path):
    info = provenance.collect(torch.device("cpu"), seed=7, environ={"SLURM_JOB_ID": "4242"})
    assert info["versions"]["torch"] == torch.__version__
    assert info["seed"] == 7 and info["slurm_job_id"] == "4242" and info["device"] == "cpu"
    assert info["cpu_model"] and info["start_time"].endswith("+00:00")
    assert info["versions"]["peft"]


def test_the_nvidia_driver_version_comes_from_the_drivers_proc_file(tmp_path):
    proc_file = tmp_path / "version"
    proc_file.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build  (dvs-builder@U16)\n"
        "GCC version:  gcc version 12.3.0\n"
    )
    assert provenance.nvidia_driver_version(str(proc_file)) == "570.133.20"
    proc_file.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n")
    assert provenance.nvidia_driver_version(str(proc_file)) == "550.54.15"


def test_git_commit_marks_a_dirty_checkout(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = provenance.git_commit(str(tmp_path))
    assert len(clean) == 40
    (tmp_path / "f").write_text("2")
    assert provenance.git_commit(str(tmp_path)) == clean + "-dirty"
    assert provenance.git_commit(str(tmp_path / "nope")) is None
