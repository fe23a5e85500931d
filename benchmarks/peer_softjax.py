"""The relaxed Life step written with softjax, the peer of section "softjax".

softjax needs Python >= 3.12, so this file runs in its own virtual environment (``.venv-softjax``,
made by ``make bench`` when a python3.12 exists) with softflow on ``PYTHONPATH``. It times softjax's
and softflow's versions side by side in one process and prints a JSON object to stdout::

    PYTHONPATH=src .venv-softjax/bin/python benchmarks/peer_softjax.py --settings quick

softjax's ``equal(x, y)`` is ``2 * sigmoid(-softabs(x - y) / softness)`` (softabs = x * a soft
sign of x), softflow's is ``4 * s(z) * s(-z)``: the two relax ``count == 3`` differently, so only
their costs are compared here, not their values.
"""

import argparse
import json
import sys

import harness
import jax
import jax.numpy as jnp
import programs


def life_softjax(board, softness):
    """The relaxed Life step with softjax's comparisons, logic and where."""
    import softjax as sj

    count = programs.neighbour_count(board)
    three = sj.equal(count, jnp.full_like(count, 3.0), softness=softness)
    two = sj.equal(count, jnp.full_like(count, 2.0), softness=softness)
    survives = sj.logical_or(two, three)
    return sj.where(board, survives, three)


def measure(settings: harness.Settings) -> dict:
    """Time softjax's and softflow's Life step, forward and backward, side by side."""
    import softjax

    boards, targets = programs.life_boards(tiny=settings.tiny, quick=settings.quick)
    softness = jnp.float32(0.5)
    candidates = {
        "softflow": harness.compile_jitted(
            programs.life_loss(programs.life_softflow), boards, targets, softness
        ),
        "softjax": harness.compile_jitted(
            programs.life_loss(life_softjax), boards, targets, softness
        ),
    }
    samples = harness.paired_times({k: c.call for k, c in candidates.items()}, settings)
    return {
        "boards": list(boards.shape),
        "softjax_version": softjax.__version__,
        "jax_version": jax.__version__,
        "python": sys.version.split()[0],
        "seconds": {k: harness.median(v) for k, v in samples.items()},
        "ratio_softflow_over_softjax": harness.paired_ratio(samples, "softflow", "softjax"),
        "flops": {k: c.flops for k, c in candidates.items()},
        "bytes_accessed": {k: c.bytes_accessed for k, c in candidates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", choices=("quick", "full", "tiny"), default="quick")
    args = parser.parse_args()
    settings = {"quick": harness.QUICK, "full": harness.FULL, "tiny": harness.TINY}[args.settings]
    print(json.dumps(measure(settings)))


if __name__ == "__main__":
    main()
