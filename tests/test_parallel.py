"""The build's forked workers: results in order, a worker's error is the caller's, a killed worker is an error."""

from __future__ import annotations

import os
import signal

import pytest

from personalizer_adapters.engine.parallel import alongside, fork_map


def _square(job: int, task: int) -> int:
    if task == job:
        raise ValueError(f"task {task}")
    return task * task


def _killed(job: int, task: int) -> int:
    if task == job:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
    return task


def test_fork_map_gives_results_in_order_and_raises_what_a_worker_raised() -> None:
    assert list(fork_map(_square, -1, list(range(40)), workers=2)) == [t * t for t in range(40)]
    with pytest.raises(ValueError, match="task 7"):
        list(fork_map(_square, 7, list(range(40)), workers=2))


def test_a_killed_worker_is_an_error_not_a_wait() -> None:
    with pytest.raises(MemoryError, match="worker of the build died"):
        list(fork_map(_killed, 3, list(range(20)), workers=2))

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(MemoryError, match="origin's store died"), alongside(die):
        pass
