"""A joblib backend on SharedArrayExecutor: scikit-learn's ``n_jobs`` through shared memory.

Usage::

    import joblib
    import zerocopy_executor.joblib

    zerocopy_executor.joblib.register()
    with joblib.parallel_config(backend="zerocopy", n_jobs=4):
        scores = cross_val_score(model, X, y)  # every n_jobs call inside runs on it

How a Parallel call runs::

    Parallel.__call__ ─ configure(): take the reused executor for this
                        (n_jobs, start method, initializer, thread limits)
      ├─ submit(BatchedCalls) ─ arrays of more than max_nbytes → the call's one
      │                         shared copy of each; SharedArrayExecutor.submit:
      │                         large arrays in the batch travel through shared
      │                         memory, as do results
      ├─ first error or timeout ─ abort_everything(): cancel what has not started
      │                           (kill the workers where the executor can)
    terminate() ─ release the call's copies; hand the executor back; shut down
                  after idle_worker_timeout

As with loky: workers limit their BLAS and OpenMP thread pools (see
_joblib_workers); a large array handed to many tasks of one call is copied once into
shared memory and every task reads that copy, read-only under joblib's default
*mmap_mode* (see _joblib_sharing; *temp_folder* does not apply); a Parallel call
nested in a task uses joblib's nested backend (threads), and one that cannot start
workers here (in a daemonic process, or nested below threads) runs sequentially.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any

try:
    import joblib
    import threadpoolctl  # noqa: F401 - checked here, used by _joblib_workers
    from joblib._parallel_backends import inside_dask_worker
    from joblib.disk import memstr_to_bytes
    from joblib.parallel import (
        AutoBatchingMixin,
        BatchedCalls,
        FallbackToBackend,
        ParallelBackendBase,
        SequentialBackend,
    )
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    msg = (
        "zerocopy_executor.joblib needs joblib and threadpoolctl; "
        "install them with: pip install zerocopy_executor[joblib]"
    )
    raise ImportError(msg) from exc

from . import SharedArrayExecutor
from ._executor import default_context, require_callable
from ._joblib_sharing import CallArrays
from ._joblib_workers import initialize_worker
from ._reusable import EXECUTORS, ExecutorConfig, ReusedExecutor

__all__ = ["BACKEND_NAME", "DEFAULT_IDLE_WORKER_TIMEOUT", "SharedArrayBackend", "register", "shutdown"]

BACKEND_NAME = "zerocopy"
DEFAULT_IDLE_WORKER_TIMEOUT = 300.0  # seconds, as loky's reusable executor
_DEFAULT_MAX_NBYTES = 1 << 20  # joblib's "1M": larger arrays are shared once per call
# Parallel passes these to every backend's configure(): max_nbytes and mmap_mode say
# which arrays a call shares once (see _joblib_sharing); the others do not apply here.
_JOBLIB_KEYWORDS = frozenset(
    {"max_nbytes", "temp_folder", "mmap_mode", "prefer", "require", "verbose", "context"}
)
_OUR_KEYWORDS = frozenset(
    {"mp_context", "initializer", "initargs", "min_nbytes", "max_tasks_per_child", "idle_worker_timeout"}
)


def shutdown() -> None:
    """Shut down the executors the backend keeps between Parallel calls, and wait.

    They shut down by themselves once idle for *idle_worker_timeout* seconds and at
    interpreter exit; call this to release their workers and memory sooner (tests do).
    """
    EXECUTORS.shutdown()


class SharedArrayBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]  # joblib is untyped
    """joblib's ParallelBackend on a reused SharedArrayExecutor.

    Registered as ``"zerocopy"`` by :func:`register`. Keyword arguments given to
    ``joblib.parallel_config(backend="zerocopy", ...)`` configure the executor.
    joblib's own *max_nbytes* and *mmap_mode* act as with loky: within one call, an
    array of more than *max_nbytes* (1 MiB by default) is copied into shared memory
    once and every task gets that copy, read-only under *mmap_mode* "r" (the default),
    writable and shared under "r+" or "w+", while "c" (or *max_nbytes* None) gives
    each task its own writable copy.

    Args:
        nesting_level: set by joblib.
        inner_max_num_threads: BLAS/OpenMP threads per worker; defaults to
            ``cpu_count() // n_jobs`` (at least 1), as loky.
        mp_context: the workers' start method; defaults to the platform's (fork on
            Linux before Python 3.14, forkserver since), as SharedArrayExecutor's.
        initializer: run in each worker after the thread limits are set.
        initargs: arguments for *initializer*.
        min_nbytes: passed to :class:`~zerocopy_executor.SharedArrayExecutor`.
        max_tasks_per_child: passed to :class:`~zerocopy_executor.SharedArrayExecutor`.
        idle_worker_timeout: seconds an unused executor waits for the next Parallel
            call before it shuts down (300, as loky).

    Raises:
        TypeError: initializer is not callable.
        ValueError: idle_worker_timeout is negative.
    """

    supports_retrieve_callback = True  # hence timeouts and return_as="generator" too
    supports_inner_max_num_threads = True
    supports_sharedmem = False  # processes: require="sharedmem" falls back to threads
    uses_threads = False

    def __init__(  # noqa: PLR0913 - joblib's two, then the executor's
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        *,
        mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        min_nbytes: int | None = None,
        max_tasks_per_child: int | None = None,
        idle_worker_timeout: float = DEFAULT_IDLE_WORKER_TIMEOUT,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        require_callable(initializer)
        if idle_worker_timeout < 0:
            msg = f"idle_worker_timeout must be >= 0, got {idle_worker_timeout!r}"
            raise ValueError(msg)
        self._options: dict[str, Any] = {
            "mp_context": mp_context,
            "initializer": initializer,
            "initargs": tuple(initargs),
            "min_nbytes": min_nbytes,
            "max_tasks_per_child": max_tasks_per_child,
        }
        self._options["idle_worker_timeout"] = float(idle_worker_timeout)
        self._call_kwargs: dict[str, Any] = {}
        self._sharing_kwargs: dict[str, Any] = {}  # the call's max_nbytes and mmap_mode
        self._arrays: CallArrays | None = None
        self._reused: ReusedExecutor | None = None
        self._futures: set[Future[Any]] = set()
        self._futures_lock = threading.Lock()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """Return the number of workers for *n_jobs* (negative: counted back from the CPUs)."""
        if n_jobs == 0:
            msg = "n_jobs == 0 in Parallel has no meaning"  # joblib's words
            raise ValueError(msg)
        if n_jobs is None:
            return 1
        reason = self.why_sequential()
        if reason is not None:
            if n_jobs != 1:
                warnings.warn(reason, stacklevel=3)
            return 1
        if n_jobs < 0:
            return max(int(joblib.cpu_count()) + 1 + n_jobs, 1)
        return n_jobs

    def why_sequential(self) -> str | None:
        """Why a call here must run in this process (as loky decides), or None if it may start workers.

        A daemonic process (a multiprocessing or dask worker) may not have children,
        and a call nested in a thread (under joblib's threading backend, say) must not
        fork from it; loky runs such calls sequentially too, with the same warnings.
        """
        if multiprocessing.current_process().daemon:
            if inside_dask_worker():
                return (
                    f"the {BACKEND_NAME!r} backend cannot start workers inside a daemonic dask worker, "
                    "setting n_jobs=1; to run in parallel there, create the dask cluster after "
                    "dask.config.set({'distributed.worker.daemon': False}) "
                    "or with DASK_DISTRIBUTED__WORKER__DAEMON=False"
                )
            return (
                f"the {BACKEND_NAME!r} backend cannot start workers in a daemonic process "
                "(a multiprocessing worker); setting n_jobs=1"
            )
        if not (self.in_main_thread() or self.nesting_level == 0):
            return f"{BACKEND_NAME!r}-backed parallel loops cannot be nested below threads; setting n_jobs=1"
        return None

    def configure(
        self,
        n_jobs: int | None = 1,
        parallel: Any = None,
        **backend_kwargs: Any,
    ) -> int:
        """Take the reused executor for this call; return the number of workers.

        Args:
            n_jobs: the workers asked for.
            parallel: the joblib.Parallel instance.
            **backend_kwargs: joblib's keywords (*max_nbytes* and *mmap_mode* say
                which arrays the call shares once; see _joblib_sharing) and this
                backend's own, which override the constructor's for this call.

        Raises:
            TypeError: an unknown keyword argument.
        """
        n_jobs = self.effective_n_jobs(n_jobs)
        self._give_back()  # configure() again without terminate(), as abort_everything does
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        unknown = set(backend_kwargs) - _JOBLIB_KEYWORDS - _OUR_KEYWORDS
        if unknown:
            msg = f"unexpected keyword arguments for the {BACKEND_NAME!r} backend: {sorted(unknown)!r}"
            raise TypeError(msg)
        self._call_kwargs = {k: v for k, v in backend_kwargs.items() if k not in _JOBLIB_KEYWORDS}
        options = {**self._options, **self._call_kwargs}
        config = ExecutorConfig(
            max_workers=n_jobs,
            mp_context=options["mp_context"] or default_context(options["max_tasks_per_child"]),
            initializer=initialize_worker,
            initargs=(self.worker_env(n_jobs), options["initializer"], tuple(options["initargs"])),
            min_nbytes=options["min_nbytes"],
            max_tasks_per_child=options["max_tasks_per_child"],
        )
        self._reused = EXECUTORS.acquire(config)
        self._sharing_kwargs = {k: v for k, v in backend_kwargs.items() if k in ("max_nbytes", "mmap_mode")}
        max_nbytes = self._sharing_kwargs.get("max_nbytes", _DEFAULT_MAX_NBYTES)
        if isinstance(max_nbytes, str):  # Parallel converts "1M"; a direct caller may not
            max_nbytes = memstr_to_bytes(max_nbytes)
        mmap_mode = self._sharing_kwargs.get("mmap_mode", "r")
        self._arrays = CallArrays(self._reused.executor._sharing, max_nbytes, mmap_mode)
        self.parallel = parallel
        return n_jobs

    def worker_env(self, n_jobs: int) -> dict[str, str]:
        """The thread-limiting environment for workers, computed as loky does.

        Each variable is *inner_max_num_threads* if given, else the parent's value
        if set, else ``cpu_count() // n_jobs`` (at least 1).
        """
        default = max(joblib.cpu_count() // n_jobs, 1)
        explicit = self.inner_max_num_threads
        env = {
            name: str(explicit if explicit is not None else os.environ.get(name, default))
            for name in self.MAX_NUM_THREADS_VARS
        }
        if self.TBB_ENABLE_IPC_VAR not in os.environ:
            env[self.TBB_ENABLE_IPC_VAR] = "1"  # TBB schedulers coordinate across processes
        return env

    @property
    def executor(self) -> SharedArrayExecutor | None:
        """The executor this backend runs on now, if configured."""
        return None if self._reused is None else self._reused.executor

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], object] | None = None) -> Future[Any]:
        """Run a batch of calls on the executor; callback gets its future when done.

        The batch's large arrays are first swapped for the call's shared copies.
        """
        if self._reused is None:
            msg = f"the {BACKEND_NAME!r} backend is not configured; run it through joblib.Parallel"
            raise RuntimeError(msg)
        if self._arrays is not None and isinstance(func, BatchedCalls):
            func.items = self._arrays.share_in(func.items)
        future = self._reused.executor.submit(func)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget_future)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    apply_async = submit  # joblib before 1.5 calls apply_async

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        """Return the batch's results, or raise its error (the worker's traceback as cause)."""
        try:
            return out.result()
        except BrokenProcessPool:
            reused = self._reused
            if reused is not None:
                EXECUTORS.retire(reused)  # the next call starts a new executor
            raise

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel the batches not started; stop the running ones where the executor can.

        Called by joblib after the first error or a timeout.
        """
        with self._futures_lock:
            futures, self._futures = self._futures, set()
        for future in futures:
            future.cancel()
        reused = self._reused
        running = any(not f.done() for f in futures)
        if reused is not None and running:
            # Their results are not wanted, and a timed-out task may never end: later
            # calls must not queue behind them. Kill the workers where the executor
            # offers it (Python 3.14's terminate_workers), else let them finish
            # on an executor no one is handed any more.
            EXECUTORS.retire(reused)
            terminate = getattr(reused.executor, "terminate_workers", None)
            if terminate is not None and reused.users == 1:
                terminate()
        self._give_back()
        if ensure_ready and self.parallel is not None:
            kwargs = {**self._call_kwargs, **self._sharing_kwargs}
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel, **kwargs)

    def terminate(self) -> None:
        """End of a Parallel call: release its shared copies, hand the executor back for the next one."""
        self._give_back()
        self.reset_batch_stats()

    def _give_back(self) -> None:
        arrays, self._arrays = self._arrays, None
        if arrays is not None:
            arrays.close()
        reused, self._reused = self._reused, None
        if reused is not None:
            idle_timeout = self._call_kwargs.get("idle_worker_timeout", self._options["idle_worker_timeout"])
            EXECUTORS.release(reused, float(idle_timeout))

    def _forget_future(self, future: Future[Any]) -> None:
        with self._futures_lock:
            self._futures.discard(future)


def register(make_default: bool = False) -> None:
    """Register the joblib backend ``"zerocopy"``.

    Then ``joblib.parallel_config(backend="zerocopy", n_jobs=N)`` runs joblib's (and
    scikit-learn's) parallel calls on a reused SharedArrayExecutor.

    Args:
        make_default: also make it joblib's default backend.
    """
    joblib.register_parallel_backend(BACKEND_NAME, SharedArrayBackend, make_default=make_default)
