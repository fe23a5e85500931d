"""Run every gallery script (``examples/plot_*.py``) in quick mode; used by ``make gallery``."""

import argparse
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="gallery-out", help="folder for the figures")
    parser.add_argument("--full", action="store_true", help="run the full (not quick) versions")
    args = parser.parse_args()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scripts = sorted(HERE.glob("plot_*.py"))
    if not scripts:
        print("No gallery examples exist yet (examples/plot_*.py); nothing to run.")
        return 0
    env = dict(os.environ, SOFTFLOW_GALLERY_OUT=str(out), MPLBACKEND="Agg")
    env["SOFTFLOW_QUICK"] = "0" if args.full else "1"
    failed = []
    for script in scripts:
        start = time.perf_counter()
        print(f"running {script.name} ...", flush=True)
        result = subprocess.run([sys.executable, str(script)], env=env, cwd=HERE)
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"  {script.name}: {status} in {time.perf_counter() - start:.1f} s", flush=True)
        if result.returncode:
            failed.append(script.name)
    figures = sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".gif"))
    ran = len(scripts) - len(failed)
    print(f"{ran}/{len(scripts)} examples ran; {len(figures)} figures in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
