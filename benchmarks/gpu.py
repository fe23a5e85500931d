"""Run the benchmarks on a GPU in one call of at most 8 minutes and write the results as JSON.

From the repository root, on a machine with JAX for CUDA (and equinox; nothing else is needed):

    PYTHONPATH=src python benchmarks/gpu.py --out gpu.json
    python benchmarks/gpu.py --tiny --out /tmp/gpu.json     # smoke test, any machine

Then copy the JSON to benchmarks/results/gpu.json and run ``python benchmarks/render.py``:
BENCHMARKS.md shows it in its GPU section. Peers that are not installed on the machine
(AlgoVision/PyTorch, softjax) are skipped with a note. The run keeps to ``--seconds`` (default
420) of wall time by skipping what would not fit; the JSON is written even if a section fails.
"""

import argparse
import datetime
import json
import pathlib
import sys

import harness
import jax
import run

#: Full problem sizes with fewer repeats: a GPU has the memory, the time limit is the constraint.
GPU = harness.Settings(repeats=9, sample_seconds=0.05, quick=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="where to write JSON")
    parser.add_argument("--tiny", action="store_true", help="smallest problems (smoke test)")
    parser.add_argument("--seconds", type=float, default=420.0, help="time budget of the run")
    parser.add_argument("--only", nargs="+", choices=list(run.SECTIONS), default=list(run.SECTIONS))
    args = parser.parse_args()
    settings = harness.TINY if args.tiny else GPU
    if jax.default_backend() != "gpu" and not args.tiny:
        print(
            f"[bench] warning: JAX's backend is {jax.default_backend()!r}, not 'gpu'",
            file=sys.stderr,
        )
    budget = harness.Budget(args.seconds)
    meta = harness.machine_info()
    data = {"meta": meta, "sections": []}

    def save():
        meta.update(
            mode="gpu, tiny" if args.tiny else "gpu",
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            seconds=budget.seconds - budget.left(),
            samples=f"{settings.repeats} interleaved rounds of ≥ {settings.sample_seconds:g} s",
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")

    # One section at a time, saving after each: a run cut short still leaves its results.
    for name in args.only:
        data["sections"] += run.run_sections([name], settings, budget)
        save()
    print(f"[bench] wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
