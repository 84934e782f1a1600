"""Calibrate a trained model's uncertainty again on its own validation split (the split and the
data are read from the model file's metadata; the energy's prediction rigidity is fitted again
on its training split and the recipe's extra training files), and write the model with the new factors, its
validation and test errors and calibration metrics: for a model trained before the calibration
changed, or a run stopped before its final calibration.

    python scripts/recalibrate.py runs/water-heads/model.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ase.io
import torch

from cace_calc import load_model, save_model
from cace_calc.train import evaluate
from cace_calc.train.data import make_frames
from cace_calc.uncertainty import calibrate, calibration_report, fit_rigidity


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a model file with several heads (a training run's model.pt)")
    args = p.parse_args(argv)
    model = load_model(args.model)
    meta = model.metadata
    data = meta["recipe"]["data"]["train"]
    if not Path(data).is_file():
        sys.exit(f"the training data {data} is not here (the development data, ../shared)")
    images = ase.io.read(data, ":")
    from cace_calc.evaluate import reference_labels

    # stress errors wherever the data has stress labels (a heads-only stage has no stress weight)
    stress = all("stress" in reference_labels(images[i]) and images[i].pbc.all() for i in meta["split"]["test"])
    frames = {k: make_frames([images[i] for i in meta["split"][k]], model.config.elements, model.cutoff,
                             stress=stress) for k in ("valid", "test")}
    for k, f in frames.items():  # the errors too, as the training run writes them at its end
        meta["metrics"][k] = evaluate(model, f, torch.device("cpu"))
    train = [images[i] for i in meta["split"]["train"]]
    for extra in meta["recipe"]["data"].get("extra") or []:
        if not Path(extra["path"]).is_file():
            sys.exit(f"the extra training file {extra['path']} is not here: make it as the recipe says")
        train += ase.io.read(extra["path"], ":")
    meta["metrics"]["energy_rigidity"] = fit_rigidity(
        model, make_frames(train, model.config.elements, model.cutoff, stress=False))
    scales = calibrate(model, frames["valid"])
    meta["metrics"]["uncertainty_scale"] = scales
    meta["metrics"]["calibration"] = {k: calibration_report(model, f) for k, f in frames.items() if f}
    meta["uncertainty"] = {"forces_threshold_ev_per_a": scales["forces_threshold_ev_per_a"],
                           "calibrated_on": f"validation split ({len(frames['valid'])} structures)"}
    save_model(model, args.model, metadata=meta)
    metrics_file = Path(args.model).parent / "metrics.json"
    if metrics_file.is_file():
        metrics_file.write_text(json.dumps(meta["metrics"], indent=2))
    print(json.dumps({"scales": scales, "test": meta["metrics"]["calibration"].get("test")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
