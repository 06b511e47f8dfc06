"""Work spread over every core by forking: children share the parent's arrays copy-on-write.

The build's heavy stages (item similarities, profiles) are independent per chunk of items or shoppers;
``fork_map`` runs one function over the chunks in forked workers and yields the results in chunk order, so
the output is the same bytes whatever the number of workers. Small inputs stay in one process, where a fork
costs more than it saves. The children use no BLAS threads (sparse products and small numpy operations
only), which is what makes forking a process that has loaded numpy safe here.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_CURRENT: tuple[Callable[[Any, Any], Any], Any] | None = None  # (function, shared job) of the running pool


def _call(task: Any) -> Any:
    assert _CURRENT is not None, "a worker runs only inside fork_map"
    func, job = _CURRENT
    return func(job, task)


def fork_map(func: Callable[[Any, T], R], job: Any, tasks: Sequence[T], *, workers: int | None = None,
             parallel: bool = True) -> Iterator[R]:
    """``func(job, task)`` for each task, in order; over ``workers`` forked processes when ``parallel``."""
    global _CURRENT
    workers = workers or os.cpu_count() or 1
    if not parallel or workers <= 1 or len(tasks) < 2:
        for task in tasks:
            yield func(job, task)
        return
    _CURRENT = (func, job)
    # An executor, not a Pool: a worker the kernel kills (out of memory) breaks it, where a Pool waits forever.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        yield from pool.map(_call, tasks)
    except BrokenProcessPool as exc:
        raise MemoryError("a worker of the build died (the machine's memory ran out?): fewer workers or a "
                          "machine with more memory") from exc
    finally:
        pool.shutdown(cancel_futures=True)  # the tasks not started yet, if the caller stopped early
        _CURRENT = None


@contextmanager
def alongside(func: Callable[[], None], *, parallel: bool = True) -> Iterator[None]:
    """Run ``func()`` in a forked child while the block runs in this process; after the block, wait for it and
    raise what it raised. Not ``parallel``: ``func()`` runs here, after the block."""
    global _CURRENT
    if not parallel:
        yield
        func()
        return
    _CURRENT = (lambda work, _: work(), func)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            pending = pool.submit(_call, None)
            yield
            pending.result()
    except BrokenProcessPool as exc:
        raise MemoryError("the build's writer of the origin's store died (the machine's memory ran out?)") from exc
    finally:
        _CURRENT = None
