"""`python -m ftbench.slurm`, the per-node torchrun of earlier Slurm lines: ftbench.launch.slurm."""

import sys

from ftbench.launch.slurm import node_torchrun

if __name__ == "__main__":
    node_torchrun(sys.argv[1:])
