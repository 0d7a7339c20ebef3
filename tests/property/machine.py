"""The state machine: random operations run on SharedArrayExecutor and ProcessPoolExecutor side by side.

Each example starts one executor of each class (same start method, same number of
workers, the same max_tasks_per_child) and applies a random sequence of operations to
both: arrays made in the parent (plain or shared, many dtypes and layouts) and views of
them, tasks submitted or mapped over them (identity, views made in the worker, new
arrays, in-place writes, arrays kept in a worker's global and returned later,
``__main__`` classes), parent-side writes, drops and ``gc.collect()``. After every step
both sides must agree on every array's values, dtype, shape, writeable flag and layout;
each new array must share memory with exactly the arrays its counterpart shares it
with (see model.py for the two sides).

Where the README documents an intended difference, the model changes the PPE side to
what shared memory must show, explicitly, citing the README (``worker_wrote``,
``by_reference_or_own``, ``call``, ``seen_by_worker``, ``dtypes_match``):
- "Shared array arguments are the same memory in the worker: in-place writes are
  visible to the parent" (Semantics);
- "A view of a shared input returned is that very memory" (Semantics);
- "A large result made in shared memory (zc.empty(...), ...) comes back by reference,
  uncopied" (Semantics): a worker's shared array comes back shared, while "an array
  and views of it returned together ... arrive as separate arrays" (Semantics), as
  pickling gives them; and "an array the worker keeps past the
  call (a cache in a global, a stashed argument) comes back as a copy of its values at
  return, whichever task returns it" (Semantics), so what a worker keeps is never the
  caller's result; a shared argument it keeps is the caller's memory, so the worker's
  writes to it reach the caller, and a later task returns a copy of its values then;
- "the array's memory lies in a shared segment (zc.empty, ..., or an array received
  from a worker) ... by reference" (the table of paths): a result that arrives in
  shared memory is itself a shared array;
- "a read-only *shared* argument is the same memory in the worker, so it arrives
  read-only on every Python" (Differences);
- "a strided byte-swapped array keeps its dtype (NumPy's pickling returns native byte
  order)" (Differences);
- a result pickle refuses (a lambda, a local class) comes back by value, as loky
  returns it, where ProcessPoolExecutor's future fails (issue 19).
Everything else must be what ProcessPoolExecutor gives.

Run through ``tests/property/main.py``, whose ``__main__`` classes and functions the
``main`` rules send (they pickle by reference, as a user's script's do).
"""

from __future__ import annotations

import concurrent.futures.process
import functools
import gc
import multiprocessing
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from hypothesis import currently_in_test_context, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

import zerocopy_executor as zc
from tests import _tasks
from tests._tasks import VIEWS, canonical_bytes, values
from tests.property.model import (
    ARRAYS,
    CONFIG,
    SALTS,
    SEVERAL_VIEWS,
    SHM,
    SLOTS,
    TIMEOUT,
    ArraySpec,
    Outcome,
    Pair,
    PerSide,
    Source,
    copy_with_values,
    describe_array,
    dtypes_match,
    in_sae_only,
    layout,
    misaligned_like,
    normalized,
    outcome_of,
    pickled,
    shm_names,
    split,
    sys_exc_pending,
    view_chain,
)


def replaces_dead_workers() -> bool:
    """Whether ProcessPoolExecutor has the fix for gh-115634 (on the executor in 3.13, its thread later)."""
    holders = (ProcessPoolExecutor, concurrent.futures.process._ExecutorManagerThread)
    return any(hasattr(holder, "_replace_dead_worker") for holder in holders)


class DifferentialMachine(RuleBasedStateMachine):
    """SharedArrayExecutor against ProcessPoolExecutor, one random sequence of operations per example."""

    arrays = Bundle("arrays")

    def __init__(self) -> None:
        super().__init__()
        self.sae: zc.SharedArrayExecutor | None = None
        self.ppe: ProcessPoolExecutor | None = None
        self.workers = 1
        self.one_task_at_a_time = False
        self.live: list[Pair] = []
        self.created: list[Pair] = []
        self.count = 0
        # Worker slots that hold a shared argument the worker kept: SAE's worker holds the
        # caller's very memory, so the model keeps the PPE side's array it must equal.
        self.by_reference: dict[str, np.ndarray] = {}
        self.segments_before = shm_names()

    # --- life cycle ---------------------------------------------------------------

    @initialize(
        workers=st.deferred(lambda: st.sampled_from(CONFIG.workers)),
        min_nbytes=st.sampled_from([0, 64]),
        tasks_per_child=st.sampled_from([None, 3]),
    )
    def start(self, workers: int, min_nbytes: int, tasks_per_child: int | None) -> None:
        """One executor of each class; small arrays shared too (min_nbytes), workers replaced maybe."""
        context = multiprocessing.get_context(CONFIG.start_method)
        if CONFIG.start_method == "fork" or sys.version_info < (3, 11):
            tasks_per_child = None  # not with fork; new in 3.11
        # A limit above 1 hangs ProcessPoolExecutor itself (and so its subclass) once tasks
        # have queued up behind a worker: it counts their completions as idle workers and
        # does not replace the next worker that reaches its limit (gh-115634, fixed where
        # _replace_dead_worker exists). Without the fix, each task goes alone.
        self.one_task_at_a_time = tasks_per_child is not None and not replaces_dead_workers()
        extra = {} if tasks_per_child is None else {"max_tasks_per_child": tasks_per_child}
        self.workers = workers
        self.sae = zc.SharedArrayExecutor(workers, mp_context=context, min_nbytes=min_nbytes, **extra)
        self.ppe = ProcessPoolExecutor(workers, mp_context=context, **extra)

    def teardown(self) -> None:
        failing = sys_exc_pending()
        for executor in (self.sae, self.ppe):
            if executor is None:
                continue
            if failing:  # a task may hang (the failure): stop the workers, so that shutdown returns
                for process in list((executor._processes or {}).values()):
                    process.kill()
            executor.shutdown(wait=True, cancel_futures=True)
        for pair in self.created:  # the bundles hold them too
            pair.sae = pair.ppe = None
        self.live.clear()
        self.by_reference.clear()
        gc.collect()
        if failing or self.sae is None:
            return
        deadline = time.monotonic() + 10
        while (left := shm_names() - self.segments_before) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert not left, (
            f"segments left in {SHM} once the executors were shut down and every array dropped: {left}"
        )

    # --- bookkeeping -----------------------------------------------------------------

    def track(self, sae: Any, ppe: Any, expect_shared: bool | None, what: str) -> Pair:
        """Record a new array on both sides; check it, and that it is shared if the model says so."""
        shared = zc.is_shared(sae)
        self.count += 1
        pair = Pair(sae, ppe, shared, f"<{what} #{self.count}>")
        if expect_shared is not None:
            assert shared == expect_shared, (
                f"{pair}: zerocopy_executor.is_shared gives {shared}, the model {expect_shared}: "
                f"{describe_array(sae)}"
            )
        self.created.append(pair)
        self.check(pair)
        self.check_aliasing(pair)
        self.live.append(pair)
        if currently_in_test_context():  # not when steps are replayed by hand
            note(f"{pair}: {describe_array(sae)}")
        return pair

    def check(self, pair: Pair) -> None:
        sae, ppe = pair.sae, pair.ppe
        where = f"{pair}: SAE {describe_array(sae)}; PPE {describe_array(ppe)}"
        assert sae.shape == ppe.shape, f"shapes differ, {where}"
        assert dtypes_match(sae.dtype, ppe.dtype), f"dtypes differ, {where}"
        assert sae.flags.writeable == ppe.flags.writeable, f"writeable flags differ, {where}"
        assert layout(sae) == layout(ppe), f"layouts differ (C, F contiguous), {where}"
        assert canonical_bytes(sae) == canonical_bytes(ppe), (
            f"values differ, {where}: SAE {sae!r} PPE {ppe!r}"
        )

    def check_aliasing(self, new: Pair) -> None:
        """A new array shares memory with the same live arrays on both sides (once: memory stays put)."""
        for other in self.live:
            sae = bool(np.shares_memory(new.sae, other.sae))
            ppe = bool(np.shares_memory(new.ppe, other.ppe))
            assert sae == ppe, (
                f"{new} and {other} share memory with {'SAE' if sae else 'PPE'} only: "
                f"{describe_array(new.sae)}; {describe_array(other.sae)}"
            )

    @invariant()
    def everything_agrees(self) -> None:
        """Every live array has the same values and flags on both sides (writes reach aliases)."""
        for pair in self.live:
            self.check(pair)

    # --- arrays in the parent -----------------------------------------------------------

    @initialize(target=arrays, plain=ARRAYS, shared=ARRAYS)
    def first_arrays(self, plain: ArraySpec, shared: ArraySpec) -> Any:
        """A plain and a shared array to start with, so that every rule can run from the first step."""
        return multiple(self.make(plain, shared=False), self.make(shared, shared=True))

    @rule(target=arrays, spec=ARRAYS, shared=st.booleans())
    def make(self, spec: ArraySpec, shared: bool) -> Pair:
        """A new array in the parent: plain or shared, C or Fortran order, aligned or one byte off."""
        base = np.array(values(spec.dtype, spec.shape, spec.salt), order=spec.order)
        if spec.misaligned:  # its data one byte into its buffer, which a Python buffer allows
            sae = misaligned_like(base, zc.empty if shared else np.empty)
            ppe = misaligned_like(base, np.empty)
        else:
            sae, ppe = (zc.share(base) if shared else base.copy(order="K")), base
        what = ("shared" if shared else "plain") + (" misaligned" if spec.misaligned else "")
        return self.track(sae, ppe, shared and base.size > 0, what)

    @rule(target=arrays, source=arrays, name=st.sampled_from([*sorted(VIEWS), "copy"]))
    def view(self, source: Pair, name: str) -> Pair:
        """The parent makes a view (or a copy) of an array it holds."""
        if name == "copy":
            return self.track(source.sae.copy(), source.ppe.copy(), False, f"copy of {source}")
        sae, ppe = VIEWS[name](source.sae), VIEWS[name](source.ppe)
        return self.track(sae, ppe, source.shared and sae.size > 0, f"{name} view of {source}")

    @rule(target_pair=arrays, salt=SALTS)
    def write(self, target_pair: Pair, salt: int) -> None:
        """The parent writes into an array it holds (an argument, a result, a view)."""
        if not target_pair.sae.flags.writeable:
            return  # the flags agree (checked): nothing to write on either side
        for side in (target_pair.sae, target_pair.ppe):
            side[...] = values(side.dtype, side.shape, salt)

    @rule(dropped=consumes(arrays), collect=st.booleans())
    def drop(self, dropped: Pair, collect: bool) -> None:
        """The parent drops an array (and collects garbage)."""
        self.live = [pair for pair in self.live if pair is not dropped]
        dropped.sae = dropped.ppe = None
        if collect:
            gc.collect()

    # --- tasks --------------------------------------------------------------------------

    @rule(
        target=arrays,
        xs=st.lists(arrays, min_size=1, max_size=4),
        container=st.sampled_from(["bare", "tuple", "nested"]),
    )
    def send_back(self, xs: list[Pair], container: str) -> Any:
        """The worker returns its argument: an array, or arrays (the same one twice, maybe) in containers."""
        if container == "bare":
            return self.produce(_tasks.identity, (xs[0],), [Source(arg=xs[0])])
        if container == "tuple":
            argument = PerSide(tuple(x.sae for x in xs), tuple(x.ppe for x in xs))
        else:
            argument = PerSide(
                *(
                    {"a": [getattr(xs[0], side)], "b": tuple(getattr(x, side) for x in xs[1:])}
                    for side in ("sae", "ppe")
                )
            )
        return self.produce(_tasks.identity, (argument,), [Source(arg=x) for x in xs])

    @rule(target=arrays, x=arrays, names=SEVERAL_VIEWS, container=st.sampled_from(["tuple", "list", "dict"]))
    def views_in_worker(self, x: Pair, names: tuple[str, ...], container: str) -> Any:
        """The worker returns views it makes of its argument."""
        names = self.one_view_unless_shared(names, x.shared)
        return self.produce(
            _tasks.views_of, (x, names, container), [Source(arg=x, views=(n,)) for n in names]
        )

    @rule(target=arrays, x=arrays, names=SEVERAL_VIEWS, how=st.sampled_from(["numpy", "shared", "twice"]))
    def new_in_worker(self, x: Pair, names: tuple[str, ...], how: str) -> Any:
        """The worker returns a new array (NumPy's, or made with zerocopy_executor) and views of it."""
        if how == "twice":
            return self.produce(_tasks.twice, (x,), None)
        shared = how == "shared"
        names = ("same", *names[1:]) if shared else self.one_view_unless_shared(names, False)
        sources = [Source(views=(n,), fresh=0, fresh_shared=shared) for n in names]
        return self.produce(_tasks.fresh_views, (x, names, in_sae_only(shared)), sources)

    @rule(x=arrays, how=st.sampled_from(["sum", "seen", "raise"]))
    def inspect_in_worker(self, x: Pair, how: str) -> None:
        """The worker sums its argument, reports what it sees of it, or raises an exception holding it."""
        if how == "sum":
            self.call(_tasks.sum_of, (x,), [])
        elif how == "seen":
            self.seen_by_worker(x)
        else:
            self.raise_holding(x)

    def seen_by_worker(self, x: Pair) -> None:
        """What the worker sees of an argument: its dtype, shape, values and whether it may write."""
        sae, ppe = self.both(_tasks.seen_by_worker, (x,))
        if sae.error is not None or ppe.error is not None:
            self.same_error(sae, ppe)
            return
        (sae_dtype, *sae_rest, sae_writeable), (ppe_dtype, *ppe_rest, ppe_writeable) = sae.value, ppe.value
        assert dtypes_match(np.dtype(sae_dtype), np.dtype(ppe_dtype)), f"worker saw {sae_dtype} / {ppe_dtype}"
        assert sae_rest == ppe_rest, f"worker saw other values: SAE {sae.describe()}; PPE {ppe.describe()}"
        # "a read-only *shared* argument is the same memory in the worker, so it arrives
        # read-only on every Python" (README, Differences); a writable one is writable.
        expected = bool(x.sae.flags.writeable) if x.shared else ppe_writeable
        assert sae_writeable == expected, f"worker may write: {sae_writeable}, expected {expected}"

    def raise_holding(self, x: Pair) -> None:
        """A task raises an exception holding its argument: the same exception, holding the same values."""
        sae, ppe = self.both(_tasks.raise_holding, (x,))
        assert type(sae.error) is type(ppe.error), f"SAE {sae.describe()}; PPE {ppe.describe()}"
        assert isinstance(sae.error, _tasks.CustomError), f"SAE {sae.describe()}"
        assert isinstance(ppe.error, _tasks.CustomError), f"PPE {ppe.describe()}"
        held, expected = sae.error.detail, ppe.error.detail
        assert (held.shape, held.flags.writeable) == (expected.shape, expected.flags.writeable), (
            f"SAE's exception holds {describe_array(held)}, PPE's {describe_array(expected)}"
        )
        assert dtypes_match(held.dtype, expected.dtype), f"SAE's exception holds {describe_array(held)}"
        assert canonical_bytes(held) == canonical_bytes(expected), f"SAE's exception holds {held!r}"

    @rule(
        target=arrays,
        x=arrays,
        y=arrays,
        salt=SALTS,
        returned=st.sampled_from(["nothing", "it", "it twice", "another"]),
    )
    def write_in_worker(self, x: Pair, y: Pair, salt: int, returned: str) -> Any:
        """The worker writes into its argument, then returns nothing, it, another argument, or it again."""
        if returned in ("nothing", "it"):
            sources = [Source(arg=x)] if returned == "it" else []
            return self.produce(_tasks.mutate, (x, salt, returned == "it"), sources, writes=(x, salt))
        y = x if returned == "it twice" else y
        return self.produce(_tasks.write_first_return_second, (x, y, salt), [Source(arg=y)], writes=(x, salt))

    @rule(target=arrays, dropped=consumes(arrays))
    def drop_while_in_flight(self, dropped: Pair) -> Any:
        """The parent drops its only reference to an argument (and collects) before the result arrives.

        "A shared argument stays valid until its task ends, even if the caller drops it."
        """
        self.live = [pair for pair in self.live if pair is not dropped]
        sae_future = self.executor("sae").submit(_tasks.identity, dropped.sae)
        ppe_future = self.executor("ppe").submit(_tasks.identity, dropped.ppe)
        model = Pair(None, dropped.ppe, dropped.shared, dropped.label)  # what the model needs of it
        dropped.sae = dropped.ppe = None
        gc.collect()
        sae = outcome_of(lambda: sae_future.result(timeout=TIMEOUT))
        ppe = outcome_of(lambda: ppe_future.result(timeout=TIMEOUT))
        if sae.error is not None or ppe.error is not None:
            self.same_error(sae, ppe)
            return multiple()
        return multiple(*self.results(sae, ppe, [Source(arg=model)], _tasks.identity))

    @rule(
        target=arrays,
        xs=st.lists(arrays, min_size=1, max_size=3),
        task=st.sampled_from(["identity", "views", "new", "doubled", "total", "mutate"]),
        names=SEVERAL_VIEWS,
        salt=SALTS,
        chunksize=st.sampled_from([1, 2]),
    )
    def map_over(self, xs: list[Pair], task: str, names: tuple[str, ...], salt: int, chunksize: int) -> Any:
        """executor.map of one task over a few arrays."""
        if self.one_task_at_a_time:
            xs = xs[:1]
        plans: dict[str, tuple[Any, Any]] = {
            "identity": (_tasks.identity, lambda x: [Source(arg=x)]),
            "doubled": (_tasks.twice, lambda x: None),
            "total": (_tasks.sum_of, lambda x: []),
            "mutate": (functools.partial(_tasks.mutate, salt=salt), lambda x: []),
        }
        if task == "views":
            names = self.one_view_unless_shared(names, all(x.shared for x in xs))
            fn = functools.partial(_tasks.views_of, names=names)
            plans[task] = (fn, lambda x: [Source(arg=x, views=(n,)) for n in names])
        if task == "new":
            names = self.one_view_unless_shared(names, False)
            fn = functools.partial(_tasks.fresh_views, names=names, shared=False)
            plans[task] = (fn, lambda x: [Source(views=(n,), fresh=0) for n in names])
        if task == "mutate" and not (self.workers == 1 and all(x.sae.flags.writeable for x in xs)):
            # Sequential writes only (one worker), and none that fails half-way: map stops
            # at the first error, and which of the later tasks ran is up to timing.
            task = "identity"
        fn, sources_of = plans[task]
        sae = outcome_of(
            lambda: list(
                self.executor("sae").map(fn, *[[x.sae for x in xs]], chunksize=chunksize, timeout=TIMEOUT)
            )
        )
        ppe = outcome_of(
            lambda: list(
                self.executor("ppe").map(fn, *[[x.ppe for x in xs]], chunksize=chunksize, timeout=TIMEOUT)
            )
        )
        if sae.error is not None or ppe.error is not None:
            self.same_error(sae, ppe)
            return multiple()
        made: list[Pair] = []
        for x, sae_value, ppe_value in zip(xs, sae.value, ppe.value, strict=True):
            if task == "mutate":
                self.worker_wrote(x, salt)
            made += self.results(Outcome(sae_value), Outcome(ppe_value), sources_of(x), fn)
        return multiple(*made)

    # --- what a worker keeps between tasks (one worker: both executors' workers see the same tasks) ---

    def stash_allowed(self) -> bool:
        return self.workers == 1 and "stash" not in CONFIG.excluded

    # One rule for all of it, so that each example that keeps something also fetches it
    # (Hypothesis leaves a random subset of the rules out of each example).
    @precondition(stash_allowed)
    @rule(
        target=arrays,
        action=st.sampled_from(["stash", "keep_new", "keep_new_shared", "fetch", "mutate", "forget"]),
        x=arrays,
        slot=SLOTS,
        salt=SALTS,
    )
    def worker_global(self, action: str, x: Pair, slot: str, salt: int) -> Any:
        """A worker global: its argument (fetched at once) or a new array kept, fetched, written, dropped.

        x is the argument of "stash" and "keep_new..." (the others take only the slot).
        """
        if "stash-copies" in CONFIG.excluded:  # only the caller's shared memory, kept
            action = {"stash": "stash" if x.shared else "fetch", "keep_new": "keep_new_shared"}.get(
                action, action
            )
        if action == "stash":  # and fetch it back at once, in a later task
            if self.call(_tasks.stash_in, (x, slot), []) is None:
                return multiple()
            if x.shared:
                self.by_reference[slot] = x.ppe  # the worker keeps the caller's memory itself
            else:
                self.by_reference.pop(slot, None)  # the worker keeps a copy of its own
            action = "fetch"
        if action in ("keep_new", "keep_new_shared"):
            shared = action == "keep_new_shared"
            made = self.call(
                _tasks.keep_fresh,
                (x, slot, in_sae_only(shared)),
                [Source(fresh=0, fresh_shared=shared, kept=True)],
            )
            if made is not None:
                self.by_reference.pop(slot, None)  # the worker keeps an array of its own
            return multiple(*made or [])
        if action == "fetch":
            return self.produce(_tasks.fetch_from, (slot,), [Source(slot=slot)])
        if action == "mutate":
            kept = self.by_reference.get(slot)
            read_only = kept is not None and not kept.flags.writeable
            done = self.call(_tasks.mutate_stashed, (slot, salt), [], read_only_write=read_only)
            if done is not None and kept is not None:
                kept[...] = values(kept.dtype, kept.shape, salt)  # the worker wrote the caller's memory
            return multiple()
        self.call(_tasks.forget, (slot,), [])
        self.by_reference.pop(slot, None)
        return multiple()

    # --- __main__ classes and functions, results only cloudpickle can pickle ---

    def main_allowed(self) -> bool:
        return CONFIG.main is not None and "main" not in CONFIG.excluded

    @precondition(main_allowed)
    @rule(
        target=arrays,
        x=arrays,
        names=SEVERAL_VIEWS,
        child=st.booleans(),
        made_in=st.sampled_from(["parent", "worker"]),
    )
    def main_classes(self, x: Pair, names: tuple[str, ...], child: bool, made_in: str) -> Any:
        """An instance of a __main__ class holding views of an array comes back, of that very class.

        Made in the parent and sent (the worker returns it), or made in the worker by a
        __main__ function; a subclass's method calls super().
        """
        main = CONFIG.main
        assert main is not None
        if made_in == "worker":
            names = self.one_view_unless_shared(names, x.shared)
            return self.produce(
                main.wrap_views, (x, names, child), [Source(arg=x, views=(n,)) for n in names]
            )
        cls = main.MainChild if child else main.MainHolder
        holders = [cls(*(VIEWS[n](side) for n in names)) for side in (x.sae, x.ppe)]
        sources = [Source(arg=x, views=(n,)) for n in names]
        return self.produce(_tasks.identity, (PerSide(*holders),), sources)

    @precondition(lambda self: "cloudpickle" not in CONFIG.excluded)
    @rule(x=arrays, local_class=st.booleans())
    def result_only_cloudpickle_pickles(self, x: Pair, local_class: bool) -> None:
        """A lambda or a local class's instance as the result: it comes back, holding the argument's values.

        Intended difference (issue 19): a result pickle refuses comes back by value, as
        loky returns it, where ProcessPoolExecutor's future fails with pickle's error.
        """
        sae, ppe = self.both(_tasks.local_instance if local_class else _tasks.closure_over, (x,))
        assert isinstance(ppe.error, (pickle.PicklingError, AttributeError)), f"PPE {ppe.describe()}"
        assert sae.error is None, f"SAE {sae.describe()}, expected the result by value"
        held = sae.value.value if local_class else sae.value()
        assert type(held) is np.ndarray, f"SAE's result holds {held!r}"
        assert (held.shape, held.dtype) == (x.sae.shape, x.sae.dtype), (
            f"SAE's result holds {describe_array(held)}"
        )
        assert canonical_bytes(held) == canonical_bytes(x.sae), f"SAE's result holds other values: {held!r}"

    # --- the model -------------------------------------------------------------------

    def one_view_unless_shared(self, names: tuple[str, ...], shared: bool) -> tuple[str, ...]:
        """With --exclude result-views, a worker returns memory that is not shared whole, and once."""
        return names if shared or "result-views" not in CONFIG.excluded else ("same",)

    def executor(self, side: str) -> Any:
        executor = self.sae if side == "sae" else self.ppe
        assert executor is not None
        return executor

    def both(self, fn: Any, args: tuple[Any, ...]) -> tuple[Outcome, Outcome]:
        """Run fn on each executor with each side's arguments."""
        outcomes = []
        for side in ("sae", "ppe"):
            side_args = [getattr(a, side) if isinstance(a, (Pair, PerSide)) else a for a in args]
            future = self.executor(side).submit(fn, *side_args)
            outcomes.append(outcome_of(lambda f=future: f.result(timeout=TIMEOUT)))
        return outcomes[0], outcomes[1]

    def same_error(self, sae: Outcome, ppe: Outcome) -> None:
        both = f"SAE {sae.describe()}; PPE {ppe.describe()}"
        assert sae.error is not None, f"only PPE raised: {both}"
        assert ppe.error is not None, f"only SAE raised: {both}"
        assert type(sae.error) is type(ppe.error), f"different exceptions: {both}"
        assert normalized(str(sae.error)) == normalized(str(ppe.error)), f"different messages: {both}"

    def produce(self, fn: Any, args: tuple[Any, ...], sources: list[Source] | None, **model: Any) -> Any:
        """call(), for a rule that adds the result's arrays to the bundle."""
        return multiple(*self.call(fn, args, sources, **model) or [])

    def call(
        self,
        fn: Any,
        args: tuple[Any, ...],
        sources: list[Source] | None,
        *,
        writes: tuple[Pair, int] | None = None,
        read_only_write: bool = False,
    ) -> list[Pair] | None:
        """Run fn on both executors, compare, apply the model; return the new arrays (None if it raised)."""
        sae, ppe = self.both(fn, args)
        if writes is not None and writes[0].shared and not writes[0].sae.flags.writeable:
            read_only_write = True
        if read_only_write:
            # "a read-only *shared* argument is the same memory in the worker, so it arrives
            # read-only on every Python" (README, Differences): writing to it fails, while
            # ProcessPoolExecutor's worker may have a writable copy.
            assert isinstance(sae.error, ValueError), f"SAE {sae.describe()}, expected a read-only ValueError"
            assert "read-only" in str(sae.error), f"SAE {sae.describe()}"
            return None
        if sae.error is not None or ppe.error is not None:
            self.same_error(sae, ppe)
            return None
        if writes is not None:
            self.worker_wrote(*writes)
        return self.results(sae, ppe, sources, fn)

    def worker_wrote(self, x: Pair, salt: int) -> None:
        """A worker wrote values(salt) into argument x: for shared memory, the caller's array.

        "Shared array arguments are the same memory in the worker: in-place writes are
        visible to the parent" (README, Semantics).
        """
        if x.shared:
            x.ppe[...] = values(x.ppe.dtype, x.ppe.shape, salt)

    def results(self, sae: Outcome, ppe: Outcome, sources: list[Source] | None, fn: Any) -> list[Pair]:
        """Track a result's arrays; sources says where each comes from (None: each is new, and NumPy's)."""
        sae_arrays: list[np.ndarray] = []
        ppe_arrays: list[np.ndarray] = []
        sae_shape, ppe_shape = split(sae.value, sae_arrays), split(ppe.value, ppe_arrays)
        assert sae_shape == ppe_shape, f"results differ: SAE {sae.describe()}; PPE {ppe.describe()}"
        if sources is None:
            sources = [Source()] * len(sae_arrays)
        assert len(sae_arrays) == len(sources), f"the model expects {len(sources)} arrays from {fn}"
        made = []
        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "task")
        for index, (sae_array, source) in enumerate(zip(sae_arrays, sources, strict=True)):
            ppe_array, expect_shared = self.by_reference_or_own(source, ppe_arrays, index)
            made.append(self.track(sae_array, ppe_array, expect_shared, f"{name} result {index}"))
        return made

    def empty_result(self, source: Source, own: np.ndarray) -> np.ndarray:
        """The PPE side's array for an empty result, which travels as a pickle would."""
        if source.arg is not None and source.arg.shared:
            # The worker's view of a shared argument has the caller's flags ("a read-only
            # *shared* argument ... arrives read-only on every Python", README,
            # Differences): it is that view, empty, that ProcessPoolExecutor would pickle.
            return pickled(view_chain(source.arg.ppe, source.views))
        return own

    def by_reference_or_own(
        self, source: Source, ppe_arrays: list[np.ndarray], index: int
    ) -> tuple[Any, bool | None]:
        """The PPE side's array for a result, and whether SAE's must be shared (None: either).

        ProcessPoolExecutor's own result, except where shared memory comes back by
        reference: then the array the caller's shared memory must show.
        """
        own = ppe_arrays[index]
        if own.size == 0:  # no memory to share (is_shared is False): it travels as a pickle would
            return self.empty_result(source, own), False
        if source.arg is not None and source.arg.shared:
            # "A view of a shared input returned is that very memory." (README, Semantics)
            model = view_chain(source.arg.ppe, source.views)
        elif source.kept:
            # "an array the worker keeps past the call ... comes back as a copy of its
            # values at return, whichever task returns it" (README, Semantics).
            return own, None
        elif source.fresh is not None and source.fresh_shared:
            # "A large result made in shared memory ... comes back by reference, uncopied"
            # (the array itself, however often the result holds it); but
            # "an array and views of it returned together ... arrive as separate arrays"
            # (README, Semantics): a view of it is a copy, shared or not as its size says.
            if index != source.fresh and source.views != ("same",):
                return own, None
            model = own
        elif source.slot is not None and source.slot in self.by_reference:
            # The worker kept the caller's shared memory: it returns a copy of its values
            # now (README, Semantics), laid out and flagged as pickling gives it.
            return copy_with_values(own, self.by_reference[source.slot]), None
        else:
            return own, None
        return model, True
