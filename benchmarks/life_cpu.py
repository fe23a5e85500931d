"""Reverse Game of Life boards of the Kaggle protocol on the CPU and write the score as JSON.

::

    nice -n 10 python benchmarks/life_cpu.py --boards 1000 --seconds 540 \\
        --out benchmarks/results/life_cpu.json

The same measurement as ``life_gpu.py`` (whose command line it reuses) with CPU-sized defaults: all
boards in one batch, a budget that keeps the whole run (board generation and scoring included)
within ten minutes.
"""

from life_gpu import main

if __name__ == "__main__":
    main(boards=1000, seconds=540.0, batch_size=None, out="life_cpu.json")
