"""torch.distributed for tests: a one-process group, and functions run on several ranks.

`run_ranks(worker, folder)` starts one CPU process per rank (``spawn``, as torchrun's
workers start: nothing inherited from the test process but what is pickled), joins
them in a gloo group and calls ``worker(rank, folder)`` in each. The ranks meet
through a file in `folder` rather than a TCP port, so tests running at the same time
on one machine never take each other's port. Each rank's stdout and stderr (Python's
and the C++ libraries') go to ``folder/rank<r>.log``; when a rank fails or the ranks
hang, the test fails with every rank's log and the failing rank's traceback. A
worker returns something JSON can write; `run_ranks` returns those, in rank order.

`single_process_group(folder)` is the one-rank group of the tests that wrap a model
in `DistributedDataParallel` without starting processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

Worker = Callable[[int, Path], Any]


@contextmanager
def single_process_group(folder: Path) -> Iterator[None]:
    """A gloo process group of one rank for the body of the ``with`` block."""
    store = dist.FileStore(str(folder / "single-rank-store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_ranks(
    worker: Worker,
    folder: Path,
    world_size: int = 2,
    timeout: float = 60.0,
) -> list[Any]:
    """Run ``worker(rank, folder)`` on `world_size` CPU processes in one gloo group.

    Args:
        worker: a module-level function (the child processes import it by name).
        folder: an empty folder for the rendezvous file, the logs and the results.
        world_size: the number of ranks.
        timeout: seconds for the whole run; a collective waits at most as long.

    Returns:
        what each rank's `worker` returned, in rank order.
    """
    context = mp.start_processes(
        _rank_main,
        args=(worker, str(folder), world_size, timeout),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout + 30  # the ranks' own timeout fires first
    failure: Exception | None = None
    hung = False
    try:
        while not context.join(timeout=0.5):
            if time.monotonic() > deadline:
                hung = True
                for process in context.processes:
                    process.kill()
                break
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
        failure = error  # join() has stopped the other ranks
    if failure is not None:
        pytest.fail(
            f"a rank failed: {_first_line(failure)}\n(the first rank to fail may be one that "
            "lost its peer: read every rank's log)\n" + _logs(folder, world_size),
            pytrace=False,
        )
    if hung:
        pytest.fail(
            f"the ranks did not finish in {timeout + 30:.0f}s\n" + _logs(folder, world_size),
            pytrace=False,
        )
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def _rank_main(rank: int, worker: Worker, folder: str, world_size: int, timeout: float) -> None:
    """One rank: its output to its log, the group, the worker, its result to JSON."""
    log = os.open(Path(folder, f"rank{rank}.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout),
    )
    try:
        result = worker(rank, Path(folder))
        Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
        dist.barrier()  # no rank takes the group down while another still uses it
    except BaseException:
        traceback.print_exc()  # into this rank's log, whichever rank the parent hears of
        raise
    finally:
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()


def _logs(folder: Path, world_size: int) -> str:
    """Every rank's output, each under a heading."""
    parts = []
    for rank in range(world_size):
        path = folder / f"rank{rank}.log"
        text = path.read_text(errors="replace").strip() if path.exists() else "(no log)"
        parts.append(f"----- rank {rank} stdout/stderr -----\n{text or '(empty)'}")
    return "\n".join(parts)


def _first_line(error: Exception) -> str:
    """The line of a rank's traceback that says what went wrong (its last line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
