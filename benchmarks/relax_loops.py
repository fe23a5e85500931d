"""Compile time of relaxed Python loops: a PID controller written with Python ``if / elif / else``
inside ``for _ in range(steps)``, relaxed, and its gradient jitted.

The Python loop is rolled into one ``lax.scan`` (the default) or unrolled (``unroll=True``).
Goals (issue "loops compile in seconds"): ``jit(grad(relax(f)))`` of the 30-step controller
compiles in at most 10 s on 2 CPU cores, and in at most 2x the time of the 10-step one. The
candidates are measured side by side, interleaved, and the ratios are medians of per-repeat
ratios (see harness.py); each measurement traces, lowers and compiles a fresh function.

::

    PYTHONPATH=src python benchmarks/relax_loops.py --out benchmarks/results/relax_loops.json
"""

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp

import softflow as sf


def controller(steps: int):
    """A PID controller with output saturation and anti-windup on a first-order plant."""

    def pid(gains, setpoint):
        kp, ki, kd = gains[0], gains[1], gains[2]
        dt = 0.1
        y = 0.0
        v = 0.0
        integral = 0.0
        previous = setpoint
        cost = 0.0
        for _ in range(steps):
            error = setpoint - y
            integral = integral + error * dt
            derivative = (error - previous) / dt
            u = kp * error + ki * integral + kd * derivative
            if u > 2.0:
                u = 2.0
                integral = integral - error * dt
            elif u < -2.0:
                u = -2.0
                integral = integral - error * dt
            v = v + (u - 0.5 * v) * dt
            y = y + v * dt
            previous = error
            cost = cost + error * error * dt
        return cost

    return pid


ARGS = (jnp.array([1.2, 0.6, 0.05], jnp.float32), jnp.float32(1.0))


def compile_seconds(steps: int, unroll: bool | None) -> float:
    """Seconds to trace, lower and compile the jitted gradient of the relaxed controller."""
    grad = jax.jit(jax.grad(sf.relax(controller(steps), softness=0.1, unroll=unroll)))
    tick = time.perf_counter()
    grad.lower(*ARGS).compile()
    return time.perf_counter() - tick


def run_seconds(steps: int, unroll: bool | None, calls: int = 200) -> float:
    grad = jax.jit(jax.grad(sf.relax(controller(steps), softness=0.1, unroll=unroll)))
    jax.block_until_ready(grad(*ARGS))
    tick = time.perf_counter()
    for _ in range(calls):
        out = grad(*ARGS)
    jax.block_until_ready(out)
    return (time.perf_counter() - tick) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path)
    options = parser.parse_args()
    candidates = {"rolled_10": (10, None), "rolled_30": (30, None), "unrolled_10": (10, True)}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(options.repeats):  # interleaved, so that load from other processes hits all
        for name, (steps, unroll) in candidates.items():
            samples[name].append(compile_seconds(steps, unroll))
    ratio_30_10 = statistics.median(
        a / b for a, b in zip(samples["rolled_30"], samples["rolled_10"], strict=True)
    )
    ratio_unrolled = statistics.median(
        a / b for a, b in zip(samples["unrolled_10"], samples["rolled_10"], strict=True)
    )
    run_rolled, run_unrolled = run_seconds(10, None), run_seconds(10, True)
    result = {
        "jax": jax.__version__,
        "cpus": jax.device_count(),
        "compile_seconds_median": {k: statistics.median(v) for k, v in samples.items()},
        "compile_seconds_samples": samples,
        "ratio_rolled_30_over_rolled_10": ratio_30_10,
        "ratio_unrolled_10_over_rolled_10": ratio_unrolled,
        "gradient_call_seconds": {"rolled_10": run_rolled, "unrolled_10": run_unrolled},
    }
    print(json.dumps(result, indent=2))
    if options.out:
        options.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
