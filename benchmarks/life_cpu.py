"""Reverse Game of Life boards of the Kaggle protocol on the CPU and write the score as JSON.

::

    nice -n 10 python benchmarks/life_cpu.py --boards 1000 --seconds 540 \\
        --out benchmarks/results/life_cpu.json

The same measurement as ``life_gpu.py`` (whose command line it reuses) with CPU-sized defaults: all
boards in one batch, a budget that keeps the whole run (board generation and scoring included)
within ten minutes. The CPU is split into one XLA device per core (unless ``XLA_FLAGS`` already
sets ``--xla_force_host_platform_device_count``).
"""

import os

# One XLA:CPU device per core, the boards split over them (the solver shards its batch over all
# devices): each device runs its share on one thread. A single device spreading the search's
# loop over two cores ran 2.6 times slower than two devices side by side.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={os.cpu_count()}"
    ).strip()

from life_gpu import main  # jax, imported here, reads XLA_FLAGS when it starts

if __name__ == "__main__":
    main(boards=1000, seconds=540.0, batch_size=None, out="life_cpu.json")
