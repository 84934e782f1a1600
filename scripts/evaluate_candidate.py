"""Every check a retrained pretrained model goes through before it ships, in one command: the
reports that the model card quotes, run one after another (2 cores: nothing in parallel), each
into its own folder under --out, each with its log; then the ``scripts/model_card.py --update``
command that ships the candidate with them.

    python scripts/evaluate_candidate.py nbmotaw --run runs/nbmotaw-heads --out runs/candidate \
        [--previous pretrained/nbmotaw/model.pt] [--dry-run]

nbmotaw (about 15 min on 2 cores): uncertainty report, dimer curves, point defects (with SNAP and
the previous model), SNAP comparison (DFT test split by group, SNAP-labelled multinaries, the
alloy's elastic constants; the previous model and the first one beside it), lattice constants and
MD at 1500 K, elastic constants and phonons, the 1 keV W cascade. water (about 10 min):
uncertainty report, dimer curves, MD at 300 K. Reads the model file of ``--run`` (a training run
of the heads recipe) and writes nothing into pretrained/: shipping is the printed command.
A step that fails stops the run with its log's last lines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_NBMOTAW = "e1fabd8"  # the first nbmotaw model, kept beside later ones in the SNAP comparison


def steps(name: str, model: str, out: Path, previous: str | None) -> list[tuple[str, list[str]]]:
    """(folder, command) of every check of ``name``'s candidate ``model``, in the order they run."""
    py = sys.executable
    common = [("report", [py, "scripts/uncertainty_report.py", name, "--model", model, "--out", str(out / "report")]),
              ("dimers", [py, "scripts/dimer_curves.py", model, "--out", str(out / "dimers")])]
    if name == "water":
        return common + [("sanity", [py, "scripts/sanity_water.py", "--model", model, "--out", str(out / "sanity")])]
    others = [previous] if previous else []
    first = str(out / "nbmotaw-first.pt")
    return common + [
        ("defects", [py, "scripts/point_defects_report.py", "--model", model,
                     *[a for p in others for a in ("--model", p)], "--out", str(out / "defects")]),
        ("snap", [py, "benchmarks/snap_comparison.py", "--models", model, *others, first,
                  "--multinary", str(ROOT / "runs" / "snap" / "multinary_test.xyz"), "--elastic", "--update",
                  "--out", str(out / "snap" / "snap-comparison.json")]),
        ("sanity", [py, "scripts/sanity_nbmotaw.py", "--model", model, "--out", str(out / "sanity")]),
        ("elastic", [py, "examples/elastic_phonons_bcc.py", "--model", model, "--out", str(out / "elastic")]),
        ("cascade", [py, "scripts/cascade_target.py", "--model", model, "--out", str(out / "cascade")]),
    ]


def relabel(path: Path, labels: dict[str, str]) -> None:
    """Name the models of a snap_comparison.py result as the card shows them (``labels``: the
    model file given to it -> the name)."""
    import json

    def fix(x):
        if isinstance(x, dict):
            return {labels.get(k, k): fix(v) for k, v in x.items()}
        if isinstance(x, list):
            return [labels.get(v, v) if isinstance(v, str) else fix(v) for v in x]
        return x

    path.write_text(json.dumps(fix(json.loads(path.read_text())), indent=1))


def ship_command(name: str, run: str, out: Path) -> list[str]:
    """The model_card.py command that ships the candidate with these reports."""
    cmd = ["python", "scripts/model_card.py", name, "--update", "--run", run,
           "--calibration", str(out / "report" / "calibration.json"), "--dimers", str(out / "dimers" / "dimers.json"),
           "--sanity", str(out / "sanity" / "summary.json")]
    if name == "nbmotaw":
        cmd += ["--defects", str(out / "defects" / "defects.json"),
                "--snap", str(out / "snap" / "snap-comparison.json"),
                "--transfer", "benchmarks/results/transfer-validation.json",
                "--elastic", str(out / "elastic" / "summary.json")]
    return cmd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=["nbmotaw", "water"])
    p.add_argument("--run", required=True, help="the candidate's training run folder (with model.pt)")
    p.add_argument("--out", required=True, help="folder for the reports")
    p.add_argument("--previous", help="the model it would replace, shown beside it (nbmotaw; default: the shipped one)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    model = str(Path(args.run) / "model.pt")
    if not Path(model).is_file() and not args.dry_run:
        sys.exit(f"no model file {model}: give the folder of a finished training run")
    out = Path(args.out)
    previous = args.previous
    if args.name == "nbmotaw" and previous is None:
        previous = str(out / "nbmotaw-shipped.pt")
    plan = steps(args.name, model, out, previous)
    if args.dry_run:
        for folder, cmd in plan:
            print(f"[{folder}] {' '.join(cmd)}")
        print("ship: " + " ".join(ship_command(args.name, args.run, out)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if args.name == "nbmotaw":  # copies, so that the shipped model can be replaced while they are used
        if args.previous is None:
            (out / "nbmotaw-shipped.pt").write_bytes((ROOT / "pretrained" / "nbmotaw" / "model.pt").read_bytes())
        first = subprocess.run(["git", "show", f"{FIRST_NBMOTAW}:pretrained/nbmotaw/model.pt"], cwd=ROOT,
                               capture_output=True, check=True).stdout
        (out / "nbmotaw-first.pt").write_bytes(first)
        # the speed section stays (the same architecture costs the same); this run adds the rest
        (out / "snap").mkdir(exist_ok=True)
        (out / "snap" / "snap-comparison.json").write_bytes(
            (ROOT / "benchmarks" / "results" / "snap-comparison.json").read_bytes())
    for folder, cmd in plan:
        (out / folder).mkdir(parents=True, exist_ok=True)
        log = out / f"{folder}.log"
        start = time.perf_counter()
        print(f"[{folder}] {' '.join(cmd)}", flush=True)
        with open(log, "w") as fh:
            code = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
        if code != 0 and not (folder == "cascade" and code == 1):  # cascade: 1 means the target was missed
            tail = log.read_text().splitlines()[-5:]
            sys.exit(f"[{folder}] failed (exit {code}); the end of {log}:\n" + "\n".join(tail))
        if folder == "snap":
            relabel(out / "snap" / "snap-comparison.json",
                    {model: "nbmotaw", previous: "nbmotaw (previous release)",
                     str(out / "nbmotaw-first.pt"): f"nbmotaw v1 ({FIRST_NBMOTAW})"})
        print(f"[{folder}] done in {time.perf_counter() - start:.0f} s, log {log}", flush=True)
    print("to ship it: " + " ".join(ship_command(args.name, args.run, out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
