"""Throughput of the Game of Life descent: softflow's soft step against the same step by hand.

Both variants run the identical descent (cross-entropy of the soft step against the target, Adam,
a fixed number of iterations in one jitted ``lax.scan``) on the same boards; only the relaxed
rule differs in how it is written: :func:`life_reverse.soft_step` with ``sf.between`` and
``sf.soft_if``, or plain ``jax.nn.sigmoid`` arithmetic. The ratio of their times is the cost of
the abstraction (goal: at most 1.1).

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
from life_reverse import kaggle_boards, soft_step


def hand_written_soft_step(board, softness):
    """The relaxed B3/S23 rule in plain JAX, term for term what ``soft_step`` computes."""
    rows = board + jnp.roll(board, 1, axis=-2) + jnp.roll(board, -1, axis=-2)
    count = rows + jnp.roll(rows, 1, axis=-1) + jnp.roll(rows, -1, axis=-1) - board
    survive = jax.nn.sigmoid((count - 1.5) / softness) * jax.nn.sigmoid((3.5 - count) / softness)
    born = jax.nn.sigmoid((count - 2.5) / softness) * jax.nn.sigmoid((3.5 - count) / softness)
    return board * survive + (1 - board) * born


def descent(step_fn, iterations: int):
    """A jitted descent of ``iterations`` Adam steps on logits (B, R, H, W) towards targets."""
    optimizer = optax.adam(0.2)

    def loss(logits, targets, softness):
        stepped = jnp.clip(step_fn(jax.nn.sigmoid(logits), softness), 1e-6, 1 - 1e-6)
        target = targets[:, None]
        return -(target * jnp.log(stepped) + (1 - target) * jnp.log1p(-stepped)).sum()

    @jax.jit
    def run(logits, targets):
        def one(carry, softness):
            logits, state = carry
            grads = jax.grad(loss)(logits, targets, softness)
            updates, state = optimizer.update(grads, state)
            return (optax.apply_updates(logits, updates), state), None

        softness = jnp.geomspace(0.6, 0.05, iterations)
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
    parser.add_argument("--restarts", type=int, default=8)
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
        soft_step(probabilities, 0.3), hand_written_soft_step(probabilities, 0.3), atol=1e-6
    )
    seconds = {
        name: measure(fn, logits, targets, args.iterations, args.repeats)
        for name, fn in (("softflow", soft_step), ("plain_jax", hand_written_soft_step))
    }
    report = {
        "device": str(jax.devices()[0].device_kind),
        "boards": args.boards,
        "restarts": args.restarts,
        "iterations": args.iterations,
        "seconds": seconds,
        "boards_per_second": {k: args.boards / v for k, v in seconds.items()},
        "ratio_softflow_over_plain": seconds["softflow"] / seconds["plain_jax"],
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
