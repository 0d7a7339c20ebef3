"""Module-level callables that workers run (importable by reference under spawn)."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import numpy as np

import zerocopy_executor as zc

VALUE_FROM_INITIALIZER: Any = None


def identity(x: Any) -> Any:
    return x


def double(x: Any) -> Any:
    return x * 2


def add(x: Any, y: Any) -> Any:
    return x + y


def total(a: np.ndarray) -> float:
    return float(np.asarray(a, dtype=np.float64).sum())


def scribble(a: np.ndarray) -> float:
    """Write into the argument in place; return its new sum."""
    a[...] = 7
    return float(a.sum())


def square_in_place(a: np.ndarray) -> None:
    np.square(a, out=a)


def fill_slice(a: np.ndarray, start: int, stop: int, value: float) -> None:
    a[start:stop] = value


def is_shared_in_worker(a: np.ndarray) -> bool:
    return zc.is_shared(a)


def writeable_in_worker(a: np.ndarray) -> bool:
    return bool(a.flags.writeable)


def make_shared(n: int, value: float) -> np.ndarray:
    out = zc.empty(n)
    out[:] = value
    return out


def make_shared_and_keep(n: int, value: float) -> np.ndarray:
    """Return a shared array made here, and keep it (a worker-side cache)."""
    out = make_shared(n, value)
    _KEPT.append(out)
    return out


def make_plain(n: int, value: float) -> np.ndarray:
    return np.full(n, value)


def first_half(a: np.ndarray) -> np.ndarray:
    return a[: len(a) // 2]


def set_global(value: Any) -> None:
    global VALUE_FROM_INITIALIZER  # noqa: PLW0603
    VALUE_FROM_INITIALIZER = value


def get_global(_: Any = None) -> Any:
    return VALUE_FROM_INITIALIZER


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def kill_self(_: Any = None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_abruptly(_: Any = None) -> None:
    os._exit(3)


def pid(_: Any = None) -> int:
    return os.getpid()


def nested_roundtrip(obj: Any) -> Any:
    return obj


def describe(a: np.ndarray) -> tuple[Any, ...]:
    """What the worker sees: dtype, shape, values (as bytes of a C copy), shared or not."""
    return (a.dtype, a.shape, np.ascontiguousarray(a).tobytes(), zc.is_shared(a))


def flags(a: np.ndarray) -> dict[str, bool]:
    return {"writeable": bool(a.flags.writeable), "shared": zc.is_shared(a)}


def negate_and_return(a: np.ndarray) -> np.ndarray:
    a *= -1
    return a


def return_same_twice(n: int) -> tuple[np.ndarray, np.ndarray]:
    out = zc.empty(n)
    out[:] = 3.0
    return out, out[::2]


def copies_of(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Fresh plain copies (same layout): they travel back on the copy path."""
    return [np.array(a, copy=True, order="K") for a in arrays]


def write_ramp(a: np.ndarray) -> tuple[int, ...]:
    """Write 0, 1, 2, ... into the argument in its logical (C) order; return its shape."""
    a[...] = np.arange(a.size, dtype=a.dtype).reshape(a.shape)
    return a.shape


def views_back(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the argument, its transpose and its reverse: views the worker makes of it."""
    return a, a.T, a[::-1] if a.ndim else a


def check_and_bump(a: np.ndarray, value: float, seconds: float = 0.0) -> tuple[bool, np.ndarray]:
    """Whether the argument holds only value (checked before and after a pause); and a + 1."""
    before = bool((a == value).all())
    time.sleep(seconds)  # keeps the task, and its segments, in flight a while
    return before and bool((a == value).all()), a + 1


def mapped_here(name: str) -> tuple[int, bool, float]:
    """This worker's pid, whether it maps the segment name, and when it looked (CLOCK_MONOTONIC)."""
    with open("/proc/self/maps") as f:
        return os.getpid(), name in f.read(), time.monotonic()


# --- differential tests (tests/integration/test_differential_*.py) ---------------


def block_until(release: str, started: str | None = None, value: Any = None, timeout: float = 30.0) -> Any:
    """Touch `started` (if given), then wait until the file `release` exists; return value."""
    if started is not None:
        with open(started, "w"):
            pass
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            msg = f"{release} did not appear within {timeout} s"
            raise TimeoutError(msg)
        time.sleep(0.01)
    return value


def fail_on(x: Any, bad: Any) -> Any:
    """Return x * 10, or raise ValueError naming x when it equals bad."""
    if x == bad:
        msg = f"bad item {x!r}"
        raise ValueError(msg)
    return x * 10


def echo_kwargs(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


class CustomError(Exception):
    """An exception with extra attributes, which must survive the trip back."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def raise_custom(code: int, detail: str) -> None:
    raise CustomError(code, detail)


def return_lock(_: Any = None) -> Any:
    """Return an object that cannot be pickled."""
    return threading.Lock()


def _rebuild_only_in(origin_pid: int) -> OnlyInOrigin:
    if os.getpid() != origin_pid:
        msg = f"cannot rebuild outside process {origin_pid}"
        raise ValueError(msg)
    return OnlyInOrigin()


class OnlyInOrigin:
    """Pickles anywhere, but unpickles only in the process that pickled it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_only_in, (os.getpid(),))


def return_only_in_origin(_: Any = None) -> OnlyInOrigin:
    return OnlyInOrigin()


def sum_in_nested_pool(executor_cls: type, start_method: str, n: int) -> tuple[float, list[float]]:
    """Run a small pool of executor_cls inside this (worker) process; return its results."""
    context = multiprocessing.get_context(start_method)
    a = np.arange(n, dtype=np.float64)
    with executor_cls(2, mp_context=context) as executor:
        sum_future = executor.submit(total, a)
        doubled = list(executor.map(double, a[:4].tolist()))
        return sum_future.result(timeout=60), doubled


_KEPT: list[np.ndarray] = []


def keep_argument(a: np.ndarray) -> float:
    """Keep the argument past the call (a cache), which forbids recycling its segment."""
    _KEPT.append(a)
    return float(a.sum())


def kept_sums(_: Any = None) -> list[float]:
    return [float(a.sum()) for a in _KEPT]


def keep_argument_plus_one(a: np.ndarray) -> np.ndarray:
    """Keep the argument past the call and return a new array of its size."""
    _KEPT.append(a)
    return a + 1


def plus_one_each(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(a + 1 for a in arrays)


def quarter_plus_one(a: np.ndarray) -> np.ndarray:
    """A new array a quarter of the argument's size."""
    return a[: a.size // 4] + 1


def half_view_and_plus_one(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A view of the argument and a new array of its size, in one result."""
    return a[: a.size // 2], a + 1


def fail_with_array(a: np.ndarray) -> None:
    raise RuntimeError(f"failed on an array of {a.nbytes} bytes")


def plus_one(a: np.ndarray) -> np.ndarray:
    return a + 1


def slow_identity(x: Any, seconds: float = 0.05) -> Any:
    import time

    time.sleep(seconds)
    return x


def same_object(a: Any, b: Any) -> bool:
    """Whether the two arguments arrived as one object (pickling keeps identity within a call)."""
    return a is b


def array_kind(a: np.ndarray) -> tuple[str, bool]:
    """The class name of an array argument and whether the worker may write to it."""
    return type(a).__name__, bool(a.flags.writeable)


class CallCounter:
    """A callable object with state: pickled per task, each task counts from zero."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _: Any = None) -> int:
        self.calls += 1
        return self.calls


class Raiser:
    """Methods that raise, sent by reference (as ProcessPoolExecutor sends them)."""

    @classmethod
    def from_classmethod(cls, message: str) -> None:
        raise RuntimeError(message)  # marker: classmethod line

    def from_method(self, message: str) -> None:
        raise RuntimeError(message)  # marker: method line


# A lambda has no importable name: cloudpickle sends it by value.
raise_from_lambda = lambda message: Raiser().from_method(message)  # noqa: E731  # marker: lambda line


def _refuse_to_rebuild(message: str) -> None:
    raise ValueError(message)


class ErrorAtUnpickle:
    """Pickles fine, raises ValueError wherever it is unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_rebuild, ("refused to unpickle",))


class ExitAtUnpickle:
    """Pickles fine, raises SystemExit(3) wherever it is unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        import sys

        return (sys.exit, (3,))


def return_instance(cls: type) -> Any:
    return cls()


_PIPE_BYTES = [0]


def count_pipe_bytes() -> None:
    """Worker initializer: count the bytes this process sends through its pipes."""
    from multiprocessing.connection import Connection

    _PIPE_BYTES[0] = 0  # a forked worker inherits its parent's count
    send_bytes = Connection.send_bytes
    if getattr(send_bytes, "counted", False):  # inherited from a counting parent (fork)
        return

    def counting(self: Connection, buf: Any, offset: int = 0, size: int | None = None) -> None:
        _PIPE_BYTES[0] += memoryview(buf).nbytes if size is None else size
        send_bytes(self, buf, offset, size)

    counting.counted = True  # type: ignore[attr-defined]
    Connection.send_bytes = counting  # type: ignore[method-assign]


def pipe_bytes_sent(_: Any = None) -> int:
    """Bytes this worker sent through its pipes so far (see count_pipe_bytes)."""
    return _PIPE_BYTES[0]


def share_memory(a: Any, b: Any) -> bool:
    return bool(np.shares_memory(a, b))


# --- the leak guard's own tests (tests/test_leak_guard.py) ---------------------------

_CHILDREN: list[Any] = []


def leave_segment_behind(_: Any = None) -> str:
    """Create a segment the way the library names them, and never unlink it (a leak)."""
    name = f"zc_{os.getpid()}_{os.urandom(9).hex()}"
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"leaked")
    return name


def start_sleeper(seconds: float) -> int:
    """Start a child process that this worker never waits for; return its pid."""
    import subprocess

    child = subprocess.Popen(["sleep", str(seconds)])  # noqa: S607 - sleep(1) from PATH
    _CHILDREN.append(child)  # kept, so it is never collected (or warned about) here
    return child.pid


# --- results made in the worker (tests/integration/test_result_memory.py) -------------

_KEPT: list[Any] = []


def doubled(a: np.ndarray) -> np.ndarray:
    """W2 as users write it: NumPy allocates the result."""
    return a * 2


def doubled_into_shared(a: np.ndarray) -> np.ndarray:
    """The README's pattern: the result allocated in shared memory by the function."""
    out = zc.empty_like(a)
    np.multiply(a, 2, out=out)
    return out


def zeros_plus(a: np.ndarray, value: float) -> np.ndarray:
    """A result from zerocopy_executor.zeros: all zeros but what the function adds."""
    out = zc.zeros(a.shape, a.dtype)
    out[::2] += value
    return out


def doubled_and_kept(a: np.ndarray) -> np.ndarray:
    """Return a * 2 and keep it in this worker (a cache): its memory must never be reused."""
    out = a * 2
    _KEPT.append(out)
    return out


def doubled_into_shared_and_kept(a: np.ndarray) -> np.ndarray:
    """The README's pattern, keeping the result in this worker."""
    out = doubled_into_shared(a)
    _KEPT.append(out)
    return out


def kept_totals(_: Any = None) -> list[float]:
    """Sums of what doubled_and_kept kept: unchanged unless something reused its memory."""
    return [float(k.sum()) for k in _KEPT]


def total_of_doubled(a: np.ndarray) -> float:
    """A large temporary, then a number: nothing of the temporary comes back."""
    return float((a * 2).sum())


def grown(a: np.ndarray) -> np.ndarray:
    """An array made then grown in place (NumPy reallocates its data)."""
    out = a * 2
    out.resize(out.size + 1000, refcheck=False)
    out[-1000:] = -1.0
    return out


def keep_and_raise(a: np.ndarray) -> None:
    """Make a large array (born in the lent segment), keep it here, then fail."""
    _KEPT.append(a * 2)
    msg = "failed after keeping an array"
    raise ValueError(msg)


def make_and_raise(a: np.ndarray) -> None:
    """Make a large array, then fail (the array dies with the traceback)."""
    doubled_copy = a * 2
    msg = f"failed with {doubled_copy.size} doubled"
    raise ValueError(msg)


def first_of_kept(_: Any = None) -> float:
    """Read what keep_and_raise kept (after its mapping would have been dropped)."""
    return float(_KEPT[0][:10].sum())


def fork_and_allocate(a: np.ndarray, use_empty: bool) -> np.ndarray:
    """Fork inside the task (as a nested pool would); the child makes its own large array."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: once the parent's result exists, make an array of the same size
        os.read(ready_r, 1)
        mine = zc.empty(a.shape) if use_empty else np.empty(a.shape)
        mine[...] = 7.0
        os._exit(0)
    out = zc.empty(a.shape) if use_empty else a * 2
    if use_empty:
        out[...] = a * 2
    os.write(ready_w, b"x")
    os.waitpid(pid, 0)
    os.close(ready_r)
    os.close(ready_w)
    return out


def shared_then_unpicklable(n: int) -> list[Any]:
    """A shared result beside something pickle refuses: the reply fails to encode."""
    out = zc.empty(n)
    out[...] = 1.0
    return [out, threading.Lock()]


def copied_then_unpicklable(n: int) -> list[Any]:
    """A large plain result (copied into a segment) beside something pickle refuses."""
    return [np.ones(n), threading.Lock()]


def zero_first_sum_second(x: np.ndarray, y: np.ndarray) -> float:
    """Write zeros through the first argument, then read the second."""
    x[...] = 0
    return float(y.sum())


class Float32OnTheWire:
    """Holds float64 data and pickles it as a float32 temporary made in __reduce__."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (Float32OnTheWire, (self.data.astype(np.float32),))


class BufferOnTheWire:
    """Holds a byte value; pickles (protocol 5) a fresh out-of-band buffer of it."""

    def __init__(self, value: int, n: int = 300_000) -> None:
        self.value, self.n = value, n

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        import pickle

        data = bytearray([self.value]) * self.n  # made on the fly, dead once pickled
        return (_first_bytes, (pickle.PickleBuffer(data),))


def _first_bytes(buffer: Any) -> bytes:
    return bytes(memoryview(buffer)[:4])


def first_values(*holders: Any) -> tuple[Any, ...]:
    """The first value each argument holds (as its receiver rebuilt it)."""
    return tuple(float(h.data[0]) if isinstance(h, Float32OnTheWire) else h for h in holders)


# --- state a worker keeps between tasks (tests/integration/test_worker_state.py) ------

_STASH: list[Any] = []


def stash(value: Any) -> None:
    """Keep value in this worker's globals, as a cache would."""
    _STASH.append(value)


def fetch(_: Any = None) -> Any:
    """Return what stash kept last."""
    return _STASH[-1]


def bump_stashed(value: float) -> None:
    """Add value to the array stash kept last, in place, in the worker."""
    _STASH[-1] += value


def cached_ones(n: int) -> np.ndarray:
    """A worker cache: made by NumPy in the first call, returned by every call."""
    if not _STASH:
        _STASH.append(np.full(n, 1.0))
    cached: np.ndarray = _STASH[0]
    return cached


def stash_shared(n: int, value: float) -> None:
    """Make a shared array in the worker, keep it, return nothing."""
    kept = zc.empty(n)
    kept[:] = value
    _STASH.append(kept)


def with_views(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new array and two views of it, in one result."""
    y = a * 2
    return y, y[:10], y.T


def argument_and_view(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The argument and a view of it, in one result."""
    return a, a[:10]


def return_lambda(offset: int) -> Any:
    """Return a lambda (pickle refuses it; cloudpickle sends it by value)."""
    return lambda x: x + offset


def return_closure(offset: int) -> Any:
    """Return a closure over offset."""

    def add_offset(x: int) -> int:
        return x + offset

    return add_offset


class Greeter:
    """A class whose local subclasses call super()."""

    def greet(self) -> str:
        return "hello"


def return_local_instance(value: Any) -> Any:
    """Return an instance of a class defined in this call, whose method calls super()."""

    class Local(Greeter):
        def __init__(self, value: Any) -> None:
            self.value = value

        def greet(self) -> str:
            return super().greet() + " from a local class"

    return Local(value)


def return_local_in_list(value: Any) -> list[Any]:
    """A list holding an instance of a local class beside plain values."""
    return [1, return_local_instance(value), "x"]


def return_generator(_: Any = None) -> Any:
    """Return a generator: neither pickle nor cloudpickle can pickle it."""
    return (i for i in range(3))


def return_module(_: Any = None) -> Any:
    """Return a module object: pickle refuses it, cloudpickle sends it by name."""
    return np.linalg


def return_lambda_beside_shared(n: int) -> tuple[np.ndarray, Any]:
    """A shared array made here, beside a lambda: the result is encoded twice."""
    out = zc.empty(n)
    out[...] = 1.0
    return out, lambda x: x + 1


def return_lambda_beside_large(n: int) -> tuple[np.ndarray, Any]:
    """A large plain array (copied into a segment), beside a lambda."""
    return np.ones(n), lambda x: x + 1


def reversed_view(a: np.ndarray) -> np.ndarray:
    """A view of the argument with negative strides."""
    return a[::-1]


def read_only_view(a: np.ndarray) -> np.ndarray:
    """A read-only view of the argument."""
    view = a.view()
    view.flags.writeable = False
    return view


def head_view(a: np.ndarray) -> np.ndarray:
    """A small view of a large argument."""
    return a[:10]


# --- the integrations' tests (joblib, dask, scipy, emcee, pandas; tests/integration) -------
# Functions that need an optional library import it when called.


def total_in_own_dtype(a: np.ndarray) -> float:
    """The sum in the array's own dtype (``total`` sums in float64)."""
    return float(a.sum())


def mark_slowly(marks: np.ndarray, i: int, seconds: float) -> int:
    """Sleep, then mark slot i of a shared array: which tasks ran, seen from the parent."""
    time.sleep(seconds)
    marks[i] = 1
    return i


def fail_if(i: int, bad: int) -> int:
    if i == bad:
        msg = f"task {i} failed on purpose"
        raise ValueError(msg)
    return i


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def exit_with_status_1(_: Any = None) -> None:
    """End the worker at once with status 1 (``exit_abruptly`` uses 3)."""
    os._exit(1)


def thread_settings(_: Any = None) -> dict[str, Any]:
    """The worker's thread-pool environment and the BLAS/OpenMP pools threadpoolctl sees."""
    import threadpoolctl

    pools = threadpoolctl.threadpool_info()
    return {
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "num_threads": {p["user_api"]: p["num_threads"] for p in pools},
    }


def sphere(x: np.ndarray, data: np.ndarray) -> float:
    """A least-squares objective whose args carry an array (scipy's *args*)."""
    return float(((data - x[0]) ** 2).sum() + (x[1] - 1.0) ** 2)


def log_prob_gaussian(theta: np.ndarray, data: np.ndarray) -> float:
    """emcee log-probability: a Gaussian centred on the mean of data."""
    return float(-0.5 * ((theta - data.mean()) ** 2).sum())


def add_one_in_place(block: np.ndarray) -> np.ndarray:
    """A map_blocks function that writes into its block (and returns it)."""
    block += 1
    return block


def bump(x: float, data: np.ndarray) -> np.ndarray:
    """A vector-valued integrand for quad_vec, scaled by an array in the args."""
    return np.array([x * data[0], x * x * data[1]])


def nested_zerocopy_call(n: int) -> tuple[int, list[int], list[str]]:
    """In a worker: a Parallel call on the "zerocopy" backend; its pids and the warnings it gave."""
    import warnings

    from joblib import Parallel, delayed

    import zerocopy_executor.joblib as zc_joblib

    zc_joblib.register()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pids = Parallel(n_jobs=2, backend="zerocopy")(delayed(pid)(i) for i in range(n))
    return os.getpid(), pids, [str(w.message) for w in caught]


def nested_loky_call(n: int) -> list[int]:
    """In a worker: a Parallel call on loky, which starts (and keeps) loky workers there."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2, backend="loky")(delayed(pid)(i) for i in range(n))


def zerocopy_call_in_child(start_method: str, results: Any) -> None:
    """A child process's target: one Parallel call on the "zerocopy" backend, its result put on a queue."""
    import multiprocessing

    from joblib import Parallel, delayed, parallel_config

    import zerocopy_executor.joblib as zc_joblib

    zc_joblib.register()
    context = multiprocessing.get_context(start_method)
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=context):
        results.put(Parallel()(delayed(total_in_own_dtype)(np.full(1 << 18, float(i))) for i in range(4)))


def write_into(a: np.ndarray) -> str:
    """Write into an argument; return the error's message, or "" if the write went through."""
    try:
        a[0] = -1.0
    except ValueError as exc:
        return str(exc)
    return ""


def seen_in_worker(a: np.ndarray) -> tuple[bool, bool, float]:
    """What a worker sees of an argument: in shared memory?, writable?, its sum."""
    return zc.is_shared(a), bool(a.flags.writeable), float(a.sum())


def seen_in_list(arrays: list[np.ndarray]) -> tuple[bool, bool, bool, float]:
    """What a worker sees of a list holding one array twice: one object?, shared?, writable?, sum."""
    first = arrays[0]
    return first is arrays[1], zc.is_shared(first), bool(first.flags.writeable), float(first.sum())


# --- the property-based differential suite (tests/property) ---------------------------
#
# VIEWS and values() run in the workers and, to predict what shared memory must show,
# in the parent: the same code on both sides.


def _head(a: np.ndarray) -> np.ndarray:
    return a[: (a.shape[0] + 1) // 2] if a.ndim else a[...]


def _step(a: np.ndarray) -> np.ndarray:
    return a[..., ::2] if a.ndim else a[...]


def _reverse(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1] if a.ndim else a[...]


def _block(a: np.ndarray) -> np.ndarray:
    if a.ndim >= 2:
        return a[1:, ::-2]
    return a[::-2] if a.ndim else a[...]


def _item(a: np.ndarray) -> np.ndarray:
    """A 0-d view of the first element (the array itself if it has none)."""
    return a[(0,) * a.ndim + (Ellipsis,)] if a.size else a[...]


def _none(a: np.ndarray) -> np.ndarray:
    return a[..., :0] if a.ndim else a[...]


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


VIEWS: dict[str, Any] = {
    "same": lambda a: a,
    "head": _head,
    "step": _step,
    "reverse": _reverse,
    "T": lambda a: a.T,
    "block": _block,
    "item": _item,
    "none": _none,
    "read_only": _read_only,
}


def values(dtype: Any, shape: tuple[int, ...], salt: int) -> np.ndarray:
    """Contents for an array of dtype and shape, the same in every process for one salt."""
    return np.asarray(_values(np.dtype(dtype), tuple(shape), np.random.default_rng(salt)))


def _values(dtype: np.dtype[Any], shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    if dtype.fields is not None:
        out = np.empty(shape, dtype)
        for name in dtype.names or ():
            out[name] = _values(dtype.fields[name][0], shape, rng)
        return out
    native = dtype.newbyteorder("=")
    if dtype.kind == "b":
        raw: Any = rng.integers(0, 2, shape).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(native)
        raw = rng.integers(info.min, info.max, shape, dtype=native, endpoint=True)
    elif dtype.kind == "f":
        raw = rng.normal(0, 1000, shape)
    elif dtype.kind == "c":
        raw = rng.normal(0, 1000, shape) + 1j * rng.normal(0, 1000, shape)
    elif dtype.kind in "mM":
        raw = rng.integers(-(2**40), 2**40, shape, dtype=np.int64).view(native)
    else:
        msg = f"no values for dtype {dtype!r}; add its kind to tests._tasks._values"
        raise TypeError(msg)
    return np.asarray(raw).astype(dtype)


_SLOTS: dict[str, Any] = {}  # a worker's cache: what tasks keep between calls


def views_of(a: np.ndarray, names: tuple[str, ...], container: str = "tuple") -> Any:
    """Views of the argument, made here, in a tuple, a list or a dict nested in a list."""
    made = [VIEWS[name](a) for name in names]
    if container == "list":
        return made
    if container == "dict":
        return [{str(i): view for i, view in enumerate(made)}]
    return tuple(made)


def fresh_views(a: np.ndarray, names: tuple[str, ...], shared: bool) -> tuple[np.ndarray, ...]:
    """A new array made here (by NumPy, or in shared memory), and views of it."""
    y = zc.empty_like(a) if shared else np.empty_like(a, order=layout_order(a))
    y[...] = a
    return tuple(VIEWS[name](y) for name in names)


def layout_order(a: np.ndarray) -> str:
    """The layout zerocopy_executor.empty_like gives a new array like a: Fortran only if a is only that."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def twice(a: np.ndarray) -> Any:
    """A new array NumPy makes: ``a * 2``, C-ordered unless a is Fortran-contiguous.

    Not ``a * 2`` itself, whose layout follows a's strides: a shared argument keeps them
    in the worker, a pickled one arrives contiguous.
    """
    return np.multiply(a, 2, order="A")


def sum_of(a: np.ndarray) -> Any:
    """The argument's sum: exactly rounded for floats, NumPy's (a scalar of its dtype) otherwise.

    Not NumPy's sum of floats, whose rounding depends on the layout and the alignment of
    the memory: a shared argument keeps its own in the worker (and a copy NumPy makes
    there may be born in a lent segment), a pickled one arrives contiguous and aligned.
    """
    if a.dtype.kind == "f":
        return math.fsum(a.ravel().tolist())
    if a.dtype.kind == "c":
        return complex(math.fsum(a.real.ravel().tolist()), math.fsum(a.imag.ravel().tolist()))
    return a.sum()


def pair(x: Any, y: Any) -> tuple[Any, Any]:
    return x, y


def mutate(a: np.ndarray, salt: int, give_back: bool = False) -> np.ndarray | None:
    """Write values(salt) into the argument in place; return it if asked."""
    a[...] = values(a.dtype, a.shape, salt)
    return a if give_back else None


def write_first_return_second(x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """Write into the first argument, then return the second (which may share its memory)."""
    x[...] = values(x.dtype, x.shape, salt)
    return y


def seen_by_worker(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes, bool]:
    """What the worker sees of its argument: dtype, shape, contents, whether it may write."""
    return a.dtype.str, a.shape, canonical_bytes(a), bool(a.flags.writeable)


def canonical_bytes(a: np.ndarray) -> bytes:
    """An array's values as bytes: native byte order, C order, structured padding left out."""
    if a.dtype.fields is not None:
        return b"".join(canonical_bytes(a[name]) for name in a.dtype.names or ())
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")).tobytes()


def stash_in(a: np.ndarray, slot: str) -> None:
    """Keep the argument in this worker, under slot."""
    _SLOTS[slot] = a


def fetch_from(slot: str) -> Any:
    """Return what stash_in() or keep_fresh() kept under slot."""
    return _SLOTS[slot]


def mutate_stashed(slot: str, salt: int) -> None:
    """Write values(salt) into what is kept under slot, in place."""
    kept = _SLOTS[slot]
    kept[...] = values(kept.dtype, kept.shape, salt)


def forget(slot: str) -> None:
    _SLOTS.pop(slot, None)


def keep_fresh(a: np.ndarray, slot: str, shared: bool) -> np.ndarray:
    """Make a new array (by NumPy, or in shared memory), keep it under slot and return it."""
    y = fresh_views(a, ("same",), shared)[0]
    _SLOTS[slot] = y
    return y


def raise_holding(a: np.ndarray) -> None:
    """Raise an exception that holds the argument."""
    raise CustomError(len(a.shape), a)


def closure_over(x: Any) -> Any:
    """A result only cloudpickle could pickle (a lambda)."""
    return lambda: x


def local_instance(x: Any) -> Any:
    """A result only cloudpickle could pickle (an instance of a class defined here)."""

    class Local:
        def __init__(self, value: Any) -> None:
            self.value = value

    return Local(x)
