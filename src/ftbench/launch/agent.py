"""torchrun with its ranks' exits on record: `python -m ftbench.launch.agent <torchrun arguments>` runs the elastic
agent in this process, through torch.distributed.run's own parser and launcher, and when ranks fail writes
how each ended (exit code, or signal) from the agent's `ChildFailedError` to `$FTBENCH_RANK_EXITS`.

A SIGKILLed rank writes no elastic error file, and the summary torchrun prints changes format between torch
versions; the agent's own record of each worker's exit does neither."""

from __future__ import annotations

import os
import sys

from ftbench.files import atomic_write_json

EXITS_ENV = "FTBENCH_RANK_EXITS"
"""A file path for this node's record; `{node}` in it becomes the Slurm node id (0 on one node)."""


def exits(failures: dict) -> dict[str, dict]:
    """{global rank: {"exitcode", "signal" (a name, or None), "local_rank"}} of the agent's failures."""
    return {
        str(rank): {
            "exitcode": f.exitcode,
            "signal": f.signal_name() if f.exitcode < 0 else None,
            "local_rank": f.local_rank,
        }
        for rank, f in failures.items()
    }


def main(argv: list[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as failure:
        target = os.environ.get(EXITS_ENV)
        if target:
            atomic_write_json(target.format(node=os.environ.get("SLURM_NODEID", "0")), exits(failure.failures))
        print(failure.format_msg(), file=sys.stderr, flush=True)  # the summary torchrun prints, for the log
        sys.exit(1)


if __name__ == "__main__":
    main()
