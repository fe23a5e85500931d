"""Reverse Game of Life boards of the Kaggle protocol on the CPU and write the score as JSON.

::

    nice -n 10 python benchmarks/life_cpu.py --boards 1000 --seconds 540 \\
        --out benchmarks/results/life_cpu.json

The same measurement as ``life_gpu.py`` (whose ``run`` it reuses) with CPU-sized defaults: all
boards in one batch, a budget that keeps the whole run (board generation and scoring included)
within ten minutes.
"""

import argparse
import json
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]

from game_of_life import SolverOptions, format_table  # noqa: E402
from life_gpu import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=540.0)
    parser.add_argument("--restarts", type=int, default=SolverOptions().restarts)
    parser.add_argument(
        "--search-share",
        type=float,
        default=SolverOptions.search_share,
        help="fraction of the budget reserved for the local search",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("life_cpu.json"))
    args = parser.parse_args()
    report = run(
        args.boards, args.seconds, args.boards, args.seed, args.restarts, args.search_share
    )
    report["cpu_count"] = os.cpu_count()
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.boards} boards in {report['seconds_wall']:.1f} s")
    print("result:")
    print(format_table(report["score"]))
    print("descent alone:")
    print(format_table(report["score_descent_only"]))
    print(f"{report['search_iterations']} local-search iterations per board")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
