"""Throughput of the Game of Life descent: softflow's probabilistic step against the same by hand.

Both variants run the identical descent (squared error of three steps of the start board against
the target, Adam, a fixed number of iterations in one jitted ``lax.scan``) on the same boards;
only the step differs in how it is written: :func:`life_reverse.probabilistic_step` with
``sf.count_expectation``, or the recursion over the eight neighbours written out in plain JAX. The
ratio of their times is the cost of the abstraction (goal: at most 1.1).

::

    nice -n 10 python benchmarks/life_throughput.py --boards 256 --out life_throughput.json
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from life_reverse import kaggle_boards, probabilistic_step

#: Steps of the descent's program (the middle of the Kaggle protocol's 1..5).
STEPS = 3


def hand_written_step(board):
    """The probabilistic B3/S23 step in plain JAX: the law of the neighbour count up to 3."""
    law = [jnp.ones_like(board), *(jnp.zeros_like(board) for _ in range(3))]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                p = jnp.roll(board, (dr, dc), axis=(-2, -1))
                law = [law[0] * (1 - p), *(law[k] * (1 - p) + law[k - 1] * p for k in (1, 2, 3))]
    return law[3] + board * law[2]


def descent(step_fn, iterations: int):
    """A jitted descent of ``iterations`` Adam steps on logits (B, R, H, W) towards targets."""
    optimizer = optax.adam(0.2)
    step_fn = jax.checkpoint(step_fn)  # as in the solver: no fusion and recomputation across steps

    def loss(logits, targets, softness):
        board = jax.nn.sigmoid(logits / softness)
        evolved = jax.lax.scan(lambda b, _: (step_fn(b), None), board, None, length=STEPS)[0]
        return ((evolved - targets[:, None]) ** 2).sum()

    @jax.jit
    def run(logits, targets):
        def one(carry, softness):
            logits, state = carry
            grads = jax.grad(loss)(logits, targets, softness)
            updates, state = optimizer.update(grads, state)
            return (optax.apply_updates(logits, updates), state), None

        softness = jnp.geomspace(1.0, 0.1, iterations)
        (logits, _), _ = jax.lax.scan(one, (logits, optimizer.init(logits)), softness)
        return logits

    return run


def measure(step_fn, logits, targets, iterations: int, repeats: int) -> float:
    """Best wall time (seconds) of ``repeats`` runs after one compiling run."""
    run = descent(step_fn, iterations)
    run(logits, targets).block_until_ready()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(logits, targets).block_until_ready()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=256)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("life_throughput.json"))
    args = parser.parse_args()
    _, stops, _ = kaggle_boards(args.boards, seed=0)
    targets = jnp.asarray(stops, jnp.float32)
    logits = jax.random.normal(jax.random.key(0), (args.boards, args.restarts, *stops.shape[1:]))
    # Same numbers first: the two steps must agree before their speed is compared.
    probabilities = jax.nn.sigmoid(logits)
    np.testing.assert_allclose(
        probabilistic_step(probabilities), hand_written_step(probabilities), atol=1e-6
    )
    seconds = {
        name: measure(fn, logits, targets, args.iterations, args.repeats)
        for name, fn in (("softflow", probabilistic_step), ("plain_jax", hand_written_step))
    }
    report = {
        "device": str(jax.devices()[0].device_kind),
        "boards": args.boards,
        "restarts": args.restarts,
        "steps": STEPS,
        "iterations": args.iterations,
        "seconds": seconds,
        "boards_per_second": {k: args.boards / v for k, v in seconds.items()},
        "ratio_softflow_over_plain": seconds["softflow"] / seconds["plain_jax"],
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
