"""Where ``course grade`` executes submissions: a local process pool or a Dask cluster, one interface.

``submit(task)`` returns a future of ``course.workers.run_task(task)``; ``close()`` ends the pool
when the batch is done; ``stop()`` ends it at once (an interrupted batch): the workers kill their
kernels and fork servers.
"""
from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CourseError
from .files import remove_quietly
from .kernel import unmount_under
from .sandbox import socket_folder

if TYPE_CHECKING:
    from .kernel import KernelRecipe
    from .tasks import WorkerResult, WorkerTask


class PoolUnavailable(CourseError):
    """The pool cannot be made (no Dask scheduler at the address)."""


class LocalPool:
    kind = "local"

    def __init__(self, workers: int, warm: KernelRecipe | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from .workers import initialize_worker

        self.workers = workers
        self.others = {p.pid for p in multiprocessing.active_children()}  # not this pool's: never stopped here
        # The workers' sockets, scratch folders and fork servers go in one folder of this pool's, which
        # goes with it, whatever happens to the workers (a worker killed mid-task cleans up nothing).
        tempfile.gettempdir()  # this process keeps its own temporary folder (read once, then cached)
        self.scratch = Path(tempfile.mkdtemp(prefix="cg-", dir=socket_folder()))  # short: sockets live under it
        self.previous_tmpdir = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(self.scratch)  # workers start when tasks come, and inherit it then
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=initialize_worker, initargs=(warm,))
        # A spawning executor starts a worker per task submitted while none is idle, up to ``workers``: a
        # trivial task per worker starts them all now, so they start up while the grading process collects
        # and sanitizes.
        try:
            for _ in range(workers):
                self.executor.submit(os.getpid)
        except Exception:  # noqa: BLE001 - no process could start now: each task says so when it is sent
            pass

    def describe(self) -> str:
        """How many worker processes run (the executor starts them as tasks come, up to ``workers``)."""
        import multiprocessing

        running = sum(p.pid not in self.others for p in multiprocessing.active_children())
        return f"{running} local worker process{'es' if running != 1 else ''}"

    def slots(self) -> int:
        return self.workers

    def submit(self, task: WorkerTask) -> Future[WorkerResult]:
        from .workers import run_task

        return self.executor.submit(run_task, task)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        if self.previous_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = self.previous_tmpdir
        # A worker killed mid-submission leaves its sandbox's files, and mounts: any depth, every mount.
        unmount_under(self.scratch)
        remove_quietly(self.scratch)

    def stop(self, grace: float = 5.0) -> None:
        """End the workers now: each kills its kernels and fork servers and exits (``workers.stop_now``)."""
        import multiprocessing

        self.executor.shutdown(wait=False, cancel_futures=True)
        workers = [p for p in multiprocessing.active_children() if p.pid not in self.others]
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.join(max(0.1, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()  # its sandboxes die with it (bubblewrap's --die-with-parent)
                worker.join(1)
        self._remove_scratch()


class DaskPool:
    kind = "dask"

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError as error:  # pragma: no cover - distributed is a dependency
            raise PoolUnavailable(f"--scheduler needs dask.distributed: {error}") from None
        try:
            self.client = Client(address, timeout="20s", set_as_default=False)
        except Exception as error:
            raise PoolUnavailable(f"cannot reach the Dask scheduler at {address}: {type(error).__name__}: {error}") from None
        self.address = address
        self.futures: set[Future[WorkerResult]] = set()

    def describe(self) -> str:
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 1) for w in workers.values())
        return f"Dask scheduler {self.address} ({len(workers)} workers, {threads} threads)"

    def slots(self) -> int:
        try:
            return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info().get("workers", {}).values()))
        except Exception:
            return 1

    def submit(self, task: WorkerTask) -> Future[WorkerResult]:
        import uuid

        from .workers import run_task

        future = self.client.submit(run_task, task, key=f"course-grade-{task.id}-{uuid.uuid4().hex[:8]}", pure=False)
        self.futures.add(future)
        return future

    def close(self) -> None:
        from .workers import drain

        try:
            self.client.run(drain)  # no warm kernel outlives the batch on any worker
        except Exception:
            pass
        self.client.close()

    def stop(self) -> None:
        """Cancel what is queued and kill the kernels of the tasks in hand, on every worker."""
        from .workers import kill_running

        try:
            self.client.cancel(list(self.futures))
            self.client.run(kill_running)
        except Exception:
            pass
        self.client.close()
