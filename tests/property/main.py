"""Run the differential state machine (tests/property/machine.py) as a script's ``__main__``.

Run as ``python -m tests.property.main``: the classes and functions below are then
``__main__``'s, as a user's script's are, and workers find them in their own
``__main__`` (the parent's under fork, this module imported again under forkserver and
spawn). ProcessPoolExecutor pickles them by reference; so must SharedArrayExecutor.

The seed is printed first: ``--seed`` replays a run (same code, same options).
``--exclude`` leaves out the groups of rules that reach known bugs, to look for others.
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

from tests._tasks import VIEWS

PROFILES = {
    # About a minute per start method on a busy 2-core machine (without failures).
    "ci": {"max_examples": 40, "stateful_step_count": 15},
    "stress": {"max_examples": 400, "stateful_step_count": 40},
}


class MainHolder:
    """A __main__ class holding arrays."""

    def __init__(self, *arrays: Any) -> None:
        self.arrays = list(arrays)

    def kind(self) -> str:
        return "holder"


class MainChild(MainHolder):
    """A __main__ subclass whose method calls super(): two copies of the class would break it."""

    def kind(self) -> str:
        return "child of " + super().kind()


def wrap_views(a: Any, names: tuple[str, ...], child: bool) -> MainHolder:
    """A __main__ function, run in the worker: views of a in a __main__ class instance."""
    cls = MainChild if child else MainHolder
    return cls(*(VIEWS[name](a) for name in names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start-method", default="fork", choices=["fork", "forkserver", "spawn"])
    parser.add_argument("--profile", default="ci", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="stateful_step_count")
    parser.add_argument("--no-shrink", action="store_true", help="report the first failure as found (faster)")
    parser.add_argument("--verbose", action="store_true", help="print every example's steps")
    parser.add_argument("--workers", default="1,2", help="max_workers to draw from, e.g. 1 or 1,2")
    parser.add_argument(
        "--exclude",
        default="",
        help="comma-separated rule groups to leave out: stash, stash-copies, result-views, main, cloudpickle",
    )
    options = parser.parse_args(argv)

    from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
    from hypothesis.stateful import run_state_machine_as_test

    from tests.property import machine, model

    excluded = frozenset(filter(None, options.exclude.split(",")))
    unknown = excluded - set(model.RULE_GROUPS)
    if unknown:
        parser.error(f"unknown rule groups {sorted(unknown)}; choose from {model.RULE_GROUPS}")
    model.CONFIG.start_method = options.start_method
    model.CONFIG.excluded = excluded
    model.CONFIG.main = sys.modules["__main__"]
    model.CONFIG.workers = tuple(int(n) for n in options.workers.split(","))
    chosen = dict(PROFILES[options.profile])
    if options.max_examples is not None:
        chosen["max_examples"] = options.max_examples
    if options.steps is not None:
        chosen["stateful_step_count"] = options.steps
    run_seed = random.SystemRandom().randrange(2**32) if options.seed is None else options.seed
    profile = settings(
        **chosen,
        deadline=None,  # process start-up and shared memory make step times vary widely
        database=None,  # replay with --seed instead: no .hypothesis directory in the checkout
        print_blob=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate] if options.no_shrink else list(Phase),
        verbosity=Verbosity.verbose if options.verbose else Verbosity.normal,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    command = (
        f"python -m tests.property.main --start-method {options.start_method} --profile {options.profile}"
    )
    # Everything that changes which examples a seed makes (not --no-shrink: a replay may shrink).
    if options.max_examples is not None:
        command += f" --max-examples {options.max_examples}"
    if options.steps is not None:
        command += f" --steps {options.steps}"
    if options.workers != parser.get_default("workers"):
        command += f" --workers {options.workers}"
    if excluded:
        command += f" --exclude {','.join(sorted(excluded))}"
    print(f"replay with: {command} --seed {run_seed}", flush=True)
    seed(run_seed)(machine.DifferentialMachine)
    try:
        run_state_machine_as_test(machine.DifferentialMachine, settings=profile)
    except BaseException:
        print(f"FAILED; replay with: {command} --seed {run_seed}", flush=True)
        raise
    print("passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
