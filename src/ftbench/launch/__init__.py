"""Starting a cell: torchrun under the launcher, on one node or across Slurm nodes."""
