"""Producer and consumers: a generator of large frames, reduced by workers into ONE shared result array.

The pipeline the tutorials teach: a producer puts frames on a
``multiprocessing.JoinableQueue`` (its *maxsize* bounds the memory in flight), consumer
processes take them, process them, put each result on a second queue and call
``task_done()``, until a sentinel tells them to stop; the parent joins the queue and
gathers the results. Every frame is pickled through a pipe.

The replacement is one call::

    out = zerocopy_executor.zeros((n_frames, width))
    executor.map(column_means_into, frames(), out, buffersize=4)

``buffersize`` reads the generator at most that many frames ahead of the results
(memory bounded, as the queue's *maxsize* bounded it); each frame is copied once into a
warm shared segment, which is recycled for a later frame; and every worker writes its
row of the shared result in place (iterating over ``out`` gives views of its rows), so
nothing is sent back, no sentinel, no second queue.

Run:  python examples/producer_consumer.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import multiprocessing

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, parse_args, print_timings, runs_label, start_workers

import zerocopy_executor as zc

WORKERS = 2
BUFFERSIZE = 4  # frames in flight: map's buffersize, the queue's maxsize
FRAMES, SHAPE = 64, (1024, 1024)  # 64 frames of 8 MB: 512 MB streamed
FRAMES_QUICK, SHAPE_QUICK = 16, (256, 512)  # 1 MB each


class Frames:
    """The producer: yields frame i (a fresh float64 array, base + i) and records its lead."""

    def __init__(self, count, shape):
        self.count = count
        self.base = np.random.default_rng(0).standard_normal(shape)
        self.produced = self.consumed = self.most_ahead = 0

    def __iter__(self):
        self.produced = self.consumed = self.most_ahead = 0
        for i in range(self.count):
            self.produced += 1
            self.most_ahead = max(self.most_ahead, self.produced - self.consumed)
            yield self.base + i


def column_means(frame):
    """The work on one frame: the mean of each column."""
    return frame.mean(axis=0)


def column_means_into(frame, row):
    """Write a frame's column means into its row of the shared result (a view)."""
    row[:] = column_means(frame)


# --- the classic pipeline ---------------------------------------------------------------


def consumer(ready, tasks, results):
    """Take (index, frame) from tasks until the None sentinel; put (index, means) on results."""
    ready.wait()  # not part of the pattern: lets the parent start timing once consumers are up
    while True:
        item = tasks.get()
        try:
            if item is None:
                return
            index, frame = item
            results.put((index, column_means(frame)))
        finally:
            tasks.task_done()


def run_queue_pipeline(tasks, results, frames, width):
    """Feed every frame to the consumers, wait for them, gather the results in order."""
    out = np.empty((frames.count, width))
    for index, frame in enumerate(frames):
        tasks.put((index, frame))  # blocks while maxsize frames wait: memory bounded
    tasks.join()
    for _ in range(frames.count):
        index, means = results.get()
        out[index] = means
    return out


# --- the replacement --------------------------------------------------------------------


def run_map_pipeline(executor, frames, out):
    """Every frame to a worker, buffersize ahead of the results; rows written in place."""
    for _ in executor.map(column_means_into, frames, out, buffersize=BUFFERSIZE):
        frames.consumed += 1


def main():
    args = parse_args(
        __doc__, f"{FRAMES_QUICK} frames of {SHAPE_QUICK} (default {FRAMES} of {SHAPE}), one run"
    )
    context = multiprocessing.get_context(args.start_method)
    count, shape, repeats = (FRAMES_QUICK, SHAPE_QUICK, 1) if args.quick else (FRAMES, SHAPE, 3)
    frames = Frames(count, shape)
    expected = np.stack([column_means(frame) for frame in frames])
    frame_mb = frames.base.nbytes / 1e6
    print(
        f"producer_consumer: {count} frames of {shape[0]}x{shape[1]} float64 ({frame_mb:.0f} MB each), ",
        end="",
    )
    print(f"at most {BUFFERSIZE} in flight, {WORKERS} workers, {args.start_method}, {runs_label(repeats)}")

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        start_workers(executor, WORKERS)
        out = zc.zeros((count, shape[1]))
        _, best_map = best_time(
            repeats, lambda: run_map_pipeline(executor, frames, out), reset=lambda: out.fill(0)
        )
        map_ahead = frames.most_ahead
        stats = executor.stats()
    if not np.array_equal(out, expected):
        raise SystemExit("SharedArrayExecutor: the shared result differs from the serial column means")
    if map_ahead > BUFFERSIZE + 1:
        raise SystemExit(
            f"SharedArrayExecutor: the producer got {map_ahead} frames ahead (buffersize {BUFFERSIZE})"
        )

    tasks = context.JoinableQueue(maxsize=BUFFERSIZE)
    results = context.Queue()
    ready = context.Barrier(WORKERS + 1)
    consumers = [context.Process(target=consumer, args=(ready, tasks, results)) for _ in range(WORKERS)]
    for process in consumers:
        process.start()
    try:
        ready.wait()  # starting the consumers is not timed, as start_workers() for the executor
        gathered, best_queue = best_time(
            repeats, lambda: run_queue_pipeline(tasks, results, frames, shape[1])
        )
    finally:
        for _ in consumers:
            tasks.put(None)
        for process in consumers:
            process.join()
    if not np.array_equal(gathered, expected):
        raise SystemExit("JoinableQueue: the gathered results differ from the serial column means")

    print(f"  with map(buffersize={BUFFERSIZE}) the producer ran at most {map_ahead} frames ahead of results")
    print_timings(
        repeats,
        ("SharedArrayExecutor.map(buffersize=), rows written in place ", best_map),
        ("JoinableQueue + consumer processes, frames pickled          ", best_queue),
    )
    print(f"  {stats}")
    if stats.arrays_pickled or stats.arrays_copied != count * repeats:
        raise SystemExit(f"expected each frame copied once and nothing pickled, got {stats}")
    print("OK: both pipelines give the serial column means exactly; each frame copied once, rows in place")


if __name__ == "__main__":
    main()
