"""Render benchmark results (JSON) into BENCHMARKS.md.

Inputs, all under ``benchmarks/results/``: ``cpu.json`` (written by ``run.py``), and when present
``gpu.json`` (written by ``gpu.py`` on a CUDA machine) and ``life_cpu.json``,
``life_throughput.json`` and ``life_gpu.json`` (written by the Game of Life benchmark scripts,
``benchmarks/life_*.py``). A missing file leaves a marked placeholder; a file of an unknown
layout is shown as tables as far as its structure allows.

    python benchmarks/render.py            # re-render BENCHMARKS.md from the saved JSON
"""

import argparse
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3g}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}"
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(_format(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(v) for v in row) + " |" for row in rows]
    return lines


def _goal_line(goal: dict) -> str:
    if goal["met"]:
        return f"- **met**: {goal['goal']} — measured {goal['measured']:.2f}."
    missed = goal["measured"] / goal["limit"]
    line = (
        f"- **missed**: {goal['goal']} — measured {goal['measured']:.2f}, "
        f"{(missed - 1) * 100:.0f} % over the limit {goal['limit']:g}."
    )
    return line + (f" Why: {goal['why']}" if goal.get("why") else "")


def render_sections(sections: list[dict], level: str = "##") -> list[str]:
    """Markdown of result sections (title, description, table, goals, notes)."""
    lines = []
    for sec in sections:
        lines += [f"{level} {sec['title']}", ""]
        if sec.get("skipped"):
            lines += [f"*Skipped:* {sec['skipped']}", ""]
            continue
        if sec.get("description"):
            lines += [sec["description"], ""]
        if sec.get("rows"):
            lines += [*_table(sec["columns"], sec["rows"]), ""]
        if sec.get("goals"):
            lines += [_goal_line(goal) for goal in sec["goals"]] + [""]
        for note in sec.get("notes", []):
            lines += [f"*Note:* {note}", ""]
    return lines


def render_meta(meta: dict) -> list[str]:
    """Markdown table of the machine and versions."""
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    load = meta.get("load_average")
    rows = [
        ["CPU", f"{meta['cpu']} ({meta['cores']} cores)"],
        ["JAX device", f"{meta['device']} (backend {meta['backend']})"],
        ["platform", meta["platform"]],
        ["Python", meta["python"]],
        ["versions", versions],
        ["load average at start", ", ".join(f"{v:.2f}" for v in load) if load else ""],
        ["mode", meta.get("mode", "")],
        ["run", f"{meta.get('date', '')}, {meta.get('seconds', 0):.0f} s"],
        ["samples", meta.get("samples", "")],
    ]
    if meta.get("updated"):
        rows.append(["sections re-run", meta["updated"]])
    return _table(["", ""], rows)


def _is_record(value) -> bool:
    return isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values())


def render_any(data, level: str) -> list[str]:
    """Markdown for JSON of a format this renderer does not know: tables where it can."""
    if isinstance(data, dict) and "sections" in data:
        lines = []
        if "meta" in data:
            lines += [*render_meta(data["meta"]), ""]
        return lines + render_sections(data["sections"], level)
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        columns = list(dict.fromkeys(key for item in data for key in item))
        return [*_table(columns, [[item.get(c) for c in columns] for item in data]), ""]
    if isinstance(data, dict) and data and all(_is_record(v) for v in data.values()):
        # {row name: {column: value}}, e.g. a score per delta: one table, a row per key.
        columns = list(dict.fromkeys(key for record in data.values() for key in record))
        rows = [[name, *(record.get(c) for c in columns)] for name, record in data.items()]
        return [*_table(["", *columns], rows), ""]
    if isinstance(data, dict):
        scalars = [[k, v] for k, v in data.items() if not isinstance(v, dict | list)]
        lines = [*_table(["", ""], scalars), ""] if scalars else []
        for key, value in data.items():
            if isinstance(value, dict | list):
                lines += [f"{level} {key}", "", *render_any(value, level + "#")]
        return lines
    return ["```", json.dumps(data, indent=1), "```", ""]


#: Mean absolute error that the CPU reversal of 300 Kaggle-protocol boards in 180 s must reach.
LIFE_CPU_GOAL = 0.025


def _life_cpu_goal() -> str:
    """The goal line of the CPU reversal, judged from ``life_cpu.json`` (empty without it)."""
    path = RESULTS / "life_cpu.json"
    if not path.exists():
        return ""
    report = json.loads(path.read_text())
    mae = report["score"]["overall"]["mae"]
    verdict = "met" if mae <= LIFE_CPU_GOAL else "missed"
    return (
        f"**{verdict}**: MAE ≤ {LIFE_CPU_GOAL} on 300 boards within 180 s, compilation included "
        f"— measured {mae:.4f} on {report['boards']} boards in {report['seconds_budget']:.0f} s "
        f"(seed {report['seed']}). Run: `python benchmarks/life_cpu.py --boards 300 --seconds "
        f"180 --seed {report['seed']} --out benchmarks/results/life_cpu.json` (one XLA device "
        "per core)."
    )


def _optional(name: str, title: str, placeholder: str, note: str = "") -> list[str]:
    path = RESULTS / name
    lines = [f"## {title}", "", f"<!-- generated from benchmarks/results/{name} -->", ""]
    if not path.exists():
        return [*lines, f"*Not measured yet.* {placeholder}", ""]
    if note:
        lines += [f"*Note:* {note}", ""]
    return lines + render_any(json.loads(path.read_text()), "###")


HOW_TO_RUN = """\
## How to run

* `make bench` — quick mode (fewer sizes and repeats), a few minutes on two cores; writes
  `benchmarks/results/cpu.json` and this file.
* `make bench-full` — every size, more repeats.
* `python benchmarks/render.py` — re-render this file from the JSON in `benchmarks/results/`.
* GPU: on a machine with JAX for CUDA (equinox and optax installed; nothing else is needed),
  from the repository root:
  `PYTHONPATH=src python benchmarks/gpu.py --out benchmarks/results/gpu.json` (at most 8 minutes;
  the peers are skipped with a note where they are not installed). Copy the JSON into
  `benchmarks/results/gpu.json` here and run `python benchmarks/render.py`.
  `python benchmarks/gpu.py --tiny --out /tmp/gpu.json` is a quick smoke test on any machine.

* `make bench-sort` — the soft sort against diffsort, torchsort and softjax
  (`benchmarks/sorting.py`; about 15 minutes on two busy cores, most of it diffsort at n = 128;
  `--only pytorch` or `--only softjax` reruns one part). It times on JAX's default device: on a
  GPU machine with JAX and PyTorch for CUDA (and softjax in `.venv-softjax`),
  `XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/sorting.py --out /tmp/sorting_gpu.json`
  times every library on the GPU. `make bench-ranking` — ranking
  supervision on multi-digit numbers, softflow against softjax (`benchmarks/ranking.py`, about
  15 minutes; `--again` remakes its section from the saved records). Each writes its JSON in
  `benchmarks/results/` and re-renders this file.

The peers are optional: `pip install -e '.[bench]'` brings AlgoVision, diffsort and PyTorch (CPU);
torchsort compiles against that PyTorch (`make bench-env` builds it);
softjax needs Python >= 3.12 and runs from `.venv-softjax`, which `make bench` makes when a
python3.12 exists. A section whose peer is missing says so instead of a table.
"""


def render(cpu: dict) -> str:
    """The whole of BENCHMARKS.md."""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run.py (benchmarks/render.py); do not edit by hand. -->",
        "",
        "How fast softflow's relaxed programs run: the cost of soft branches and comparisons "
        "against plain JAX, of `soft_while` against `lax.while_loop`, and of the same programs in "
        "AlgoVision and softjax. Every table comes from one run in which the candidates were "
        "timed side by side, in interleaved rounds; times are medians over the rounds, and each "
        "ratio is the median of the per-round ratios. The CPU machine is shared with other "
        "work, so absolute times are noisy: **trust the ratios**.",
        "",
        "## Machine",
        "",
        *render_meta(cpu["meta"]),
        "",
        "## Goals",
        "",
    ]
    for sec in cpu["sections"]:
        for goal in sec.get("goals", []):
            lines.append(_goal_line(goal).replace("- ", f"- {sec['title']}: ", 1))
    lines += [""]
    lines += render_sections(cpu["sections"])
    lines += _optional(
        "gpu.json",
        "GPU",
        "Run `PYTHONPATH=src python benchmarks/gpu.py --out benchmarks/results/gpu.json` on a "
        "CUDA machine (see How to run); the card is named in its machine table.",
    )
    lines += _optional(
        "softness_check.json",
        "The run-time softness check (CPU)",
        "Written by `benchmarks/softness_check.py`.",
    )
    lines += _optional(
        "relax.json",
        "sf.relax: relaxed programs (CPU)",
        "Written by `benchmarks/relax.py`.",
    )
    lines += _optional(
        "life_cpu.json",
        "Game of Life reversal (CPU)",
        "Written by the Game of Life benchmark scripts (`benchmarks/life_*.py`).",
        _life_cpu_goal(),
    )
    lines += _optional(
        "life_throughput.json",
        "Game of Life: throughput of the relaxed step",
        "Written by `benchmarks/life_throughput.py`.",
    )
    lines += _optional(
        "sorting.json",
        "Soft sort: softflow against diffsort, torchsort and softjax",
        "Written by `benchmarks/sorting.py` (`make bench-sort`).",
    )
    lines += _optional(
        "ranking.json",
        "Ranking supervision: multi-digit numbers ordered through the soft permutation",
        "Written by `benchmarks/ranking.py` (`make bench-ranking`).",
    )
    lines += _optional(
        "life_gpu.json",
        "Game of Life reversal (GPU)",
        "Written by the Game of Life benchmark scripts on a CUDA machine.",
        "measured with the previous engine (chained one-step descents, before the multi-step "
        "descent through the count law); no GPU was lent when the multi-step engine was built, "
        "so it has no GPU numbers yet: rerun `benchmarks/life_gpu.py` on a GPU to replace these.",
    )
    lines += [HOW_TO_RUN]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=pathlib.Path, default=RESULTS / "cpu.json")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    args.out.write_text(render(json.loads(args.cpu.read_text())))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
