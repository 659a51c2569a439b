"""CPU-time samples of a benchmark's child process, read by bench/cpu_samples.py.

A benchmark puts this folder on a child's PYTHONPATH with `CT_CPU_SAMPLES=<prefix>`; Python
imports `sitecustomize` at start-up, before the child's own code. Then SIGUSR2 starts a fresh
count, and SIGUSR1 stops it and writes `<prefix>.<pid>`: a line per distinct stack, its frames
`file.py:function` from the outermost, separated by `;`, then a space and its sample count;
and a line per generation of the garbage collector, `#gc <generation> <passes> <CPU seconds>`
(the collector runs inside whatever allocated, so its samples are spread over every caller).

Why not py-spy: it samples wall-clock time and tells idle from busy by what a thread is doing,
so a process held back by its CPU quota (bench/cpu_quota.py) counts as busy wherever it
stopped. And cProfile slowed a web node sevenfold. This samples CPU time only: `ITIMER_PROF`
counts the process's user and system time (all threads) and sends SIGPROF each interval;
Python runs the handler in the main thread, the event loop's, with the frame running there.

What the samples are (read them as shares, scaled by the CPU the process was measured to use):
- The kernel checks CPU timers at its tick, so samples come at most at the tick's rate
  (230-390 per CPU second measured here), whatever the interval, and each stands for the CPU
  since the last one.
- A handler runs at the next bytecode boundary: time in C code (a driver's parser, the
  garbage collector) is charged to the Python frame that called it or that runs next.
- Time in other threads is charged to the main thread's frame at that moment.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import time
from collections import Counter
from types import FrameType

INTERVAL_S = 0.001


def _install(prefix: str) -> None:
    counts: Counter[str] = Counter()
    sampling = False
    collected = [0.0, 0.0, 0.0]  # seconds in the collector, by generation
    passes = [0, 0, 0]
    began = 0.0

    def collecting(phase: str, info: dict[str, int]) -> None:
        nonlocal began
        if phase == "start":
            began = time.thread_time()
        elif sampling:
            collected[info["generation"]] += time.thread_time() - began
            passes[info["generation"]] += 1

    def sample(signum: int, frame: FrameType | None) -> None:
        if not sampling:
            return
        names = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
            frame = frame.f_back
        names.reverse()
        counts[";".join(names)] += 1

    def start(signum: int, frame: FrameType | None) -> None:
        nonlocal sampling
        counts.clear()
        collected[:] = [0.0, 0.0, 0.0]
        passes[:] = [0, 0, 0]
        sampling = True

    def write(signum: int, frame: FrameType | None) -> None:
        nonlocal sampling
        sampling = False
        path = f"{prefix}.{os.getpid()}"
        with open(path + ".tmp", "w") as out:
            out.writelines(f"{stack} {count}\n" for stack, count in counts.items())
            for generation in range(3):
                out.write(f"#gc {generation} {passes[generation]} {collected[generation]:.6f}\n")
        os.replace(path + ".tmp", path)  # a reader never sees half a file

    def stop_timer() -> None:
        # Before the interpreter resets its signal handlers on the way out: SIGPROF's default
        # action would end the process ("Profiling timer expired") and spoil its exit status.
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

    gc.callbacks.append(collecting)
    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR2, start)
    signal.signal(signal.SIGUSR1, write)
    atexit.register(stop_timer)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL_S, INTERVAL_S)


if os.environ.get("CT_CPU_SAMPLES"):
    _install(os.environ["CT_CPU_SAMPLES"])
