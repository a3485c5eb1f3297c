"""Where units run: in this process, in local processes (joblib), or on a Dask cluster.

polcore schedules nothing itself. An engine maps `execute` over a wave of independent jobs and
yields each `Done` as it completes; the units' order, the waves and the store are the same for all
engines, and every unit stores itself where it ran (so a cluster's workers must see the same
results directory: a shared file system, as on any Slurm/PBS cluster).

* `SerialEngine()`: one after the other, in this process (the default: the book, every test).
* `JoblibEngine(n)`: `n` local worker processes (joblib's loky backend); `polcore run --jobs N`.
* `DaskEngine(address)`: a Dask distributed scheduler (`tcp://host:8786`), `"local"` for a
  `LocalCluster` started here (`n` workers, one thread each, on 127.0.0.1), or a `Client` you made
  (e.g. from a dask-jobqueue `SLURMCluster`/`PBSCluster`: one process and one GPU per worker);
  `polcore run --dask ADDRESS|local`.

Workers must run one task at a time (one thread per worker): a unit fixes the process's torch
thread count, so two units in one process would race for it.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, desc: str, show: bool | None = None) -> tqdm:
    """A bar over units with ETA on stderr when it is a terminal; nothing in a notebook's outputs."""
    if show is None:
        show = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="unit", disable=not show, leave=True, dynamic_ncols=True)


class SerialEngine:
    """Every job in this process, in order."""

    name = "serial"
    workers = 1

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        for job in jobs:
            yield fn(job)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "serial, in this process"


class JoblibEngine:
    """`n_jobs` local processes through joblib (loky); results as they complete."""

    name = "joblib"

    def __init__(self, n_jobs: int) -> None:
        if n_jobs < 1:
            raise ValueError(f"--jobs needs at least 1 process, got {n_jobs}")
        self.workers = n_jobs

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        from joblib import Parallel, delayed

        jobs = list(jobs)
        if not jobs:
            return iter(())
        # inner_max_num_threads=1: each worker's BLAS/OpenMP pools start with one thread, as a unit wants
        parallel = Parallel(n_jobs=min(self.workers, len(jobs)), backend="loky", return_as="generator_unordered",
                            inner_max_num_threads=1)
        return iter(parallel(delayed(fn)(job) for job in jobs))

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"joblib, {self.workers} local processes"


class DaskEngine:
    """A Dask distributed cluster: a scheduler address, 'local' (a LocalCluster started here), or a Client."""

    name = "dask"

    def __init__(self, address: Any = "local", *, n_workers: int = 2) -> None:
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if isinstance(address, Client):
            self.client, self._own_client = address, False
        else:
            if address == "local":
                self._cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
                address = self._cluster
            self.client, self._own_client = Client(address), True
        self.workers = len(self.client.scheduler_info().get("workers", {})) or n_workers

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        from dask.distributed import as_completed

        jobs = list(jobs)
        futures = [self.client.submit(fn, job, key=f"polcore-{job.experiment}-{job.unit.name}-{uuid.uuid4().hex[:8]}",
                                      pure=False) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()  # raises the unit's own exception
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def describe(self) -> str:
        where = "a LocalCluster on 127.0.0.1" if self._cluster is not None else str(self.client.scheduler.address)
        return f"dask, {self.workers} workers ({where})"


@contextlib.contextmanager
def make_engine(jobs: int | None = None, dask: str | None = None) -> Iterator[Any]:
    """The engine the command line asks for; closed (cluster stopped) afterwards."""
    if dask:
        engine: Any = DaskEngine(dask, n_workers=jobs or 2)
    elif jobs and jobs > 1:
        engine = JoblibEngine(jobs)
    else:
        engine = SerialEngine()
    try:
        yield engine
    finally:
        engine.close()


__all__ = ["DaskEngine", "JoblibEngine", "SerialEngine", "make_engine", "progress_bar"]
