"""Run the gallery pages (``examples/<theme>/plot_*.py``) in quick mode; used by ``make gallery``.

Each page runs in a fresh interpreter with this folder on ``PYTHONPATH``, so that it imports the
modules the pages share (``_gallery``, ``terrain``) by name, as it does in the docs build.
``python examples/run_gallery.py plot_game_of_life`` runs the pages whose name contains
``plot_game_of_life``; without names, every page runs.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time

from _gallery import EXAMPLES, THEMES, pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only the pages whose path contains one")
    parser.add_argument("--out", default="gallery-out", help="folder for the figures")
    parser.add_argument("--full", action="store_true", help="run the full (not quick) versions")
    args = parser.parse_args()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scripts = [
        page
        for page in pages()
        if not args.names or any(name in str(page.relative_to(EXAMPLES)) for name in args.names)
    ]
    unsorted = sorted(path.name for path in EXAMPLES.glob("plot_*.py"))
    if unsorted:
        print(f"warning: not run, not in a theme folder ({', '.join(THEMES)}): {unsorted}")
    if not scripts:
        print(f"No gallery page matches {args.names}; the pages are {[p.name for p in pages()]}.")
        return 1
    env = dict(os.environ, SOFTFLOW_GALLERY_OUT=str(out), MPLBACKEND="Agg")
    env["SOFTFLOW_QUICK"] = "0" if args.full else "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")]))
    failed = []
    for script in scripts:
        name = script.relative_to(EXAMPLES)
        start = time.perf_counter()
        print(f"running {name} ...", flush=True)
        result = subprocess.run([sys.executable, str(script)], env=env, cwd=script.parent)
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"  {name}: {status} in {time.perf_counter() - start:.1f} s", flush=True)
        if result.returncode:
            failed.append(str(name))
    figures = sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".gif"))
    ran = len(scripts) - len(failed)
    print(f"{ran}/{len(scripts)} pages ran; {len(figures)} figures in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
