"""Run softflow's benchmarks and write benchmarks/results/cpu.json and BENCHMARKS.md.

    python benchmarks/run.py            # quick mode (make bench)
    python benchmarks/run.py --full     # every size, more repeats (make bench-full)
    python benchmarks/run.py --only soft_if comparisons --out /tmp/x.json --markdown /tmp/x.md

Benchmarks are not tests: nothing here asserts, it measures and reports (goals missed are
reported with the measured ratio and the reason).
"""

import argparse
import datetime
import json
import pathlib
import sys
import time
import traceback

import harness
import relax_programs
import render
import sections

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

#: Section name -> (function, the least time in seconds worth starting it with).
SECTIONS = {
    "soft_if": (sections.soft_if_cost, 20),
    "comparisons": (sections.comparison_cost, 30),
    "soft_while": (sections.soft_while_cost, 40),
    "loops_vmap": (sections.loops_under_vmap, 40),
    "life_plain": (sections.life_against_plain, 20),
    "life_counting": (sections.life_counting_cost, 30),
    "softjax": (sections.life_against_softjax, 40),
    "algovision": (sections.sort_against_algovision, 40),
    "smoothing": (sections.smoothing_cost, 20),
    "relax_programs": (relax_programs.measure, 120),
    "relax_loop_compile": (relax_programs.loop_compile, 60),
}


def run_sections(names, settings: harness.Settings, budget: harness.Budget) -> list[dict]:
    """Run the named sections in order, skipping those the budget has no time left for."""
    results = []
    for name in names:
        function, needs = SECTIONS[name]
        if budget.left() < needs:
            results.append(harness.skipped(name, "out of time in this run."))
            continue
        tick = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            if name == "softjax":
                result = function(settings, timeout=max(budget.left() - 10, 10))
            elif name == "algovision":
                result = function(settings, budget)
            else:
                result = function(settings)
        except Exception as error:  # a broken section must not lose the others' results
            traceback.print_exc()
            result = harness.skipped(name, f"failed: {type(error).__name__}: {error}")
        print(f"[bench] {name}: {time.perf_counter() - tick:.0f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def merge(old: dict, new: dict, names: list[str]) -> dict:
    """``old`` results with the sections of ``new`` in place of those of the same title.

    New sections without a counterpart go at the end. The machine table stays the old run's,
    with a line that says which sections were replaced, when and under what load.
    """
    sections = list(old["sections"])
    titles = [sec["title"] for sec in sections]
    for sec in new["sections"]:
        if sec["title"] in titles:
            sections[titles.index(sec["title"])] = sec
        else:
            sections.append(sec)
            titles.append(sec["title"])
    meta = dict(old["meta"])
    load = new["meta"].get("load_average")
    this_run = (
        f"{', '.join(names)} re-run {new['meta']['date']} ({new['meta']['mode']} mode"
        + (f", load average {load[0]:.2f} at start" if load else "")
        + ")"
    )
    meta["updated"] = "; ".join(filter(None, [old["meta"].get("updated"), this_run]))
    return {"meta": meta, "sections": sections}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every size, more repeats")
    parser.add_argument("--tiny", action="store_true", help="smallest problems (smoke test)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--seconds", type=float, default=None, help="time budget of the run")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "cpu.json")
    parser.add_argument("--markdown", type=pathlib.Path, default=render.ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the sections run (by title) in the existing --out JSON, keep the rest",
    )
    args = parser.parse_args()
    settings = harness.TINY if args.tiny else harness.FULL if args.full else harness.QUICK
    budget = harness.Budget(args.seconds or (3600 if args.full else 540))
    meta = harness.machine_info()
    results = run_sections(args.only, settings, budget)
    meta.update(
        mode="tiny" if args.tiny else "full" if args.full else "quick",
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=budget.seconds - budget.left(),
        samples=f"{settings.repeats} interleaved rounds of ≥ {settings.sample_seconds:g} s each",
    )
    data = {"meta": meta, "sections": results}
    if args.merge and args.out.exists():
        data = merge(json.loads(args.out.read_text()), data, args.only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    args.markdown.write_text(render.render(data))
    print(f"[bench] wrote {args.out} and {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
