"""Planning: the config, its checks, the matrix and what a sweep asks for. Imports no torch, polars or altair."""
