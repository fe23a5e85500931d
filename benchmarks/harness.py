"""Shared machinery of the benchmarks: paired timing, compiled-program statistics, results.

Every measurement compares candidates *side by side*: the repeats of all candidates are
interleaved (A, B, C, A, B, C, ...), so that a burst of load from other processes on a shared
machine hits them alike, and each ratio is the median of the per-repeat ratios. Absolute times
are reported too, but on a noisy machine the ratios are the figures to trust.
"""

import collections
import dataclasses
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import jax


@dataclasses.dataclass
class Budget:
    """A wall-clock budget shared by all sections, so that a run never overstays its limit."""

    seconds: float
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self.seconds - (time.perf_counter() - self.started)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard to measure.

    Attributes:
        repeats: interleaved samples per candidate (the medians are over these).
        sample_seconds: each sample repeats its call until at least this long has passed.
        quick: the quick mode of ``make bench`` (fewer sizes, smaller problems).
        tiny: the smallest problems of all, for a smoke test of the GPU script on a CPU.
    """

    repeats: int
    sample_seconds: float
    quick: bool
    tiny: bool = False


QUICK = Settings(repeats=11, sample_seconds=0.1, quick=True)
FULL = Settings(repeats=21, sample_seconds=0.2, quick=False)
TINY = Settings(repeats=3, sample_seconds=0.005, quick=True, tiny=True)


def _calls_per_sample(call: Callable[[], object], sample_seconds: float) -> int:
    call()  # warm-up: first-call costs (allocation, caches) are not what we measure
    tick = time.perf_counter()
    call()
    once = max(time.perf_counter() - tick, 1e-7)
    return max(1, min(10_000, round(sample_seconds / once)))


def _sample(call: Callable[[], object], number: int) -> float:
    tick = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - tick) / number


def paired_times(calls: dict[str, Callable[[], object]], settings: Settings) -> dict[str, list]:
    """Seconds per call of each candidate, sampled in interleaved rounds.

    Arguments:
        calls: candidate name -> a no-argument callable that runs the work to completion.
        settings: repeats and sample length.

    Returns:
        name -> list of ``settings.repeats`` seconds-per-call samples, index i of every list
        taken in the same round.
    """
    numbers = {
        name: _calls_per_sample(call, settings.sample_seconds) for name, call in calls.items()
    }
    samples = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(settings.repeats):
        # Rotate the order so that no candidate always runs first (after a pause) or last.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_sample(calls[name], numbers[name]))
    return samples


def median(values) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def paired_ratio(samples: dict[str, list], numerator: str, denominator: str) -> float:
    """Median over rounds of ``numerator``'s time divided by ``denominator``'s in the same round."""
    return median(a / b for a, b in zip(samples[numerator], samples[denominator], strict=True))


@dataclasses.dataclass
class Compiled:
    """A jitted function compiled for fixed arguments, with what XLA says about it."""

    call: Callable[[], object]
    compile_seconds: float
    flops: float | None
    transcendentals: float | None
    bytes_accessed: float | None
    temp_bytes: int | None
    ops: collections.Counter


def _closing_parenthesis(text: str) -> int:
    depth = 0
    for index, char in enumerate(text):
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return index
    return len(text)


def hlo_op_counts(text: str) -> collections.Counter:
    """How many instructions of each opcode (fusion, copy, while, ...) an HLO module holds."""
    counts = collections.Counter()
    for line in text.splitlines():
        line = line.strip()
        if " = " not in line or line.startswith("HloModule"):
            continue
        rest = line.split(" = ", 1)[1]
        if rest.startswith("("):  # a tuple type: skip to its closing parenthesis
            rest = rest[_closing_parenthesis(rest) + 1 :].lstrip()
        else:
            rest = rest.partition(" ")[2]
        opcode = rest.partition("(")[0]
        if opcode:
            counts[opcode] += 1
    return counts


def _first_cost(cost):
    # cost_analysis() returns a dict (newer JAX) or a list with one dict per program.
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return cost or {}


def compile_jitted(fn: Callable, *args) -> Compiled:
    """Lower and compile ``jax.jit(fn)`` for ``args``, timing the compilation.

    The compiled executable is called directly afterwards, so nothing is compiled twice.
    """
    tick = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - tick
    try:
        cost = _first_cost(compiled.cost_analysis())
    except Exception:  # some backends do not implement it
        cost = {}
    try:
        memory = compiled.memory_analysis()
        temp = None if memory is None else int(memory.temp_size_in_bytes)
    except Exception:
        temp = None
    return Compiled(
        call=lambda: jax.block_until_ready(compiled(*args)),
        compile_seconds=seconds,
        flops=cost.get("flops"),
        transcendentals=cost.get("transcendentals"),
        bytes_accessed=cost.get("bytes accessed"),
        temp_bytes=temp,
        ops=hlo_op_counts(compiled.as_text()),
    )


def section(title: str, description: str, columns: list[str]) -> dict:
    """An empty result section: a table with ``columns`` plus notes and a verdict per goal."""
    return {
        "title": title,
        "description": description,
        "columns": columns,
        "rows": [],
        "goals": [],
        "notes": [],
    }


def goal(sec: dict, text: str, measured: float, limit: float, why: str = "") -> None:
    """Record whether a ratio ``measured`` meets ``limit`` (lower is better), and why not."""
    sec["goals"].append(
        {"goal": text, "measured": measured, "limit": limit, "met": measured <= limit, "why": why}
    )


def skipped(title: str, reason: str) -> dict:
    """A section that could not run here, with the reason."""
    sec = section(title, "", [])
    sec["skipped"] = reason
    return sec


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """The machine, the JAX backend and the versions of everything measured."""
    devices = jax.devices()
    names = ["softflow", "jax", "jaxlib", "equinox", "numpy", "torch", "algovision", "softjax"]
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "backend": jax.default_backend(),
        "device": f"{devices[0].device_kind} x{len(devices)}",
        "versions": {name: _version(name) for name in names},
    }
