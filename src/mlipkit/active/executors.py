"""Where oracle calls run, and the labelling of a store's pending rows.

- :class:`InProcess`: one after another in this process (instant oracles
  such as EMT; no timeout);
- :class:`ProcessPool`: ``workers`` local processes (pebble). A call past
  ``timeout`` seconds is killed, and a worker that dies mid-calculation is
  replaced; both come back as failed labels;
- :class:`Dask`: a ``dask.distributed`` client, a LocalCluster by default or
  any scheduler ``address``, so labelling can spread over a cluster. With a
  ``timeout`` each call runs in a child process of its worker and is killed
  past it.

Every executor's :meth:`run` yields ``(row id, Label)`` as calls finish, so
:func:`label_pending` stores each label the moment it arrives.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed

from ase import Atoms
from tqdm.auto import tqdm

from mlipkit.active.oracles import Label, Oracle, structure_hash
from mlipkit.active.store import LabelStore
from mlipkit.errors import InvalidConfig

Jobs = Sequence[tuple[int, Atoms]]


def _failure(atoms: Atoms, error: str, wall_s: float = 0.0) -> Label:
    return Label(structure_hash(atoms), False, wall_s, error=error)


class InProcess:
    """Calls the oracle here, one structure after another."""

    def run(self, oracle: Oracle, jobs: Jobs) -> Iterator[tuple[int, Label]]:
        for row_id, atoms in jobs:
            yield row_id, oracle.label(atoms)

    def close(self) -> None:
        pass


class ProcessPool:
    """``workers`` spawned processes; calls past ``timeout`` s are killed."""

    def __init__(self, workers: int = 2, timeout: float | None = None) -> None:
        if workers < 1:
            raise InvalidConfig(f"workers must be at least 1, got {workers}")
        if timeout is not None and timeout <= 0:
            raise InvalidConfig(f"timeout must be positive, got {timeout}")
        from pebble import ProcessPool as _Pool

        self.timeout = timeout
        # spawn: OpenMP runtimes (torch, tblite) do not survive a fork
        self.pool = _Pool(max_workers=workers, context=multiprocessing.get_context("spawn"))

    def run(self, oracle: Oracle, jobs: Jobs) -> Iterator[tuple[int, Label]]:
        from pebble import ProcessExpired

        futures = {}
        for row_id, atoms in jobs:
            future = self.pool.schedule(oracle.label, args=(atoms,), timeout=self.timeout)
            futures[future] = (row_id, atoms, time.perf_counter())
        for future in as_completed(futures):
            row_id, atoms, start = futures[future]
            try:
                yield row_id, future.result()
            except FutureTimeout:
                yield row_id, _failure(atoms, f"timed out after {self.timeout:g} s",
                                       self.timeout or 0.0)
            except ProcessExpired as exc:
                yield row_id, _failure(atoms, f"the worker process died (exit code "
                                       f"{exc.exitcode})", time.perf_counter() - start)
            except Exception as exc:  # e.g. a structure that cannot be sent to a worker
                yield row_id, _failure(atoms, f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.pool.stop()
        self.pool.join()


def _label_with_timeout(oracle: Oracle, atoms: Atoms, timeout: float | None) -> Label:
    """On a dask worker: the call itself, or in a child process killed past
    ``timeout``."""
    if timeout is None:
        return oracle.label(atoms)
    from pebble import ProcessExpired, concurrent

    # the child imports only the light oracles module
    call = concurrent.process(timeout=timeout, context=multiprocessing.get_context("spawn"))(
        oracle.label)
    try:
        return call(atoms).result()
    except FutureTimeout:
        return _failure(atoms, f"timed out after {timeout:g} s", timeout)
    except ProcessExpired as exc:
        return _failure(atoms, f"the worker process died (exit code {exc.exitcode})")


def _is_daemon() -> bool:
    return multiprocessing.current_process().daemon


class Dask:
    """Oracle calls as ``dask.distributed`` tasks: on the scheduler at
    ``address``, or on a LocalCluster of ``workers`` single-threaded
    processes."""

    def __init__(self, address: str | None = None, workers: int = 2,
                 timeout: float | None = None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise InvalidConfig("the dask executor needs dask.distributed: pip install "
                                "'mlipkit[dask]'") from None
        self.timeout = timeout
        self.cluster = None
        if address is None:
            # workers must be able to start a child process for timed calls
            with dask.config.set({"distributed.worker.daemon": False}):
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                            processes=True, dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            self.client = Client(address)
            if timeout is not None and any(self.client.run(_is_daemon).values()):
                self.client.close()
                raise InvalidConfig("a timeout needs dask workers that may start a child "
                                    "process: start them with the dask config "
                                    "distributed.worker.daemon: False")

    def run(self, oracle: Oracle, jobs: Jobs) -> Iterator[tuple[int, Label]]:
        from distributed import as_completed as dask_completed

        futures = {self.client.submit(_label_with_timeout, oracle, atoms, self.timeout,
                                      pure=False): (row_id, atoms) for row_id, atoms in jobs}
        for future in dask_completed(futures):
            row_id, atoms = futures[future]
            try:
                yield row_id, future.result()
            except Exception as exc:  # KilledWorker: the task's workers kept dying
                yield row_id, _failure(atoms, f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


EXECUTORS = {"inprocess": InProcess, "processes": ProcessPool, "dask": Dask}


def make_executor(kind: str, **kwargs):
    """An executor by name: ``inprocess``, ``processes`` or ``dask``."""
    if kind not in EXECUTORS:
        raise InvalidConfig(f"executor must be one of {sorted(EXECUTORS)}, got {kind!r}")
    if kind == "inprocess":
        if kwargs.get("timeout") is not None:
            raise InvalidConfig("the inprocess executor cannot enforce a timeout; use "
                                "'processes' or 'dask'")
        return InProcess()
    return EXECUTORS[kind](**kwargs)


def label_pending(store: LabelStore, oracle: Oracle, executor, max_attempts: int = 3,
                  progress: bool = False) -> dict:
    """Label every pending row of ``store`` (queued, or failed with attempts
    left), storing each label as it arrives; failed calls are retried until
    they succeed or reach ``max_attempts``. Returns the counts of this call:
    ``calls``, ``ok``, ``failed`` (calls that failed) and ``given_up``
    (structures that used up their attempts)."""
    if max_attempts < 1:
        raise InvalidConfig(f"max_attempts must be at least 1, got {max_attempts}")
    summary = {"calls": 0, "ok": 0, "failed": 0, "given_up": 0}
    failed: set[int] = set()
    jobs = store.pending(max_attempts)
    with tqdm(total=len(jobs), disable=not progress, desc="labelling", unit="call") as bar:
        while jobs:
            for row_id, label in executor.run(oracle, jobs):
                store.record(row_id, label, oracle)
                summary["calls"] += 1
                summary["ok" if label.ok else "failed"] += 1
                if not label.ok:
                    failed.add(row_id)
                bar.update(1)
            jobs = store.pending(max_attempts)
            bar.total += len(jobs)
            bar.refresh()
    summary["given_up"] = sum(1 for f in store.failures() if f["id"] in failed)
    return summary
