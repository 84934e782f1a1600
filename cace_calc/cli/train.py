"""``cace-calc train`` (a YAML recipe) and ``cace-calc finetune`` (a trained model on your data)."""

from __future__ import annotations

from ._common import _DEVICE_HELP, _MODEL_HELP


def add_train(sub):
    p = sub.add_parser(
        "train", help="fit a model to energies, forces and stress from a YAML recipe",
        description="Fit a CACE model from a YAML recipe (its keys are described in cace_calc.train.config; "
                    "pretrained/*/train.yaml are the recipes of the pretrained models). Writes checkpoint.pt "
                    "(every epoch), model.pt (best EMA weights, recipe and errors in its metadata), "
                    "log.jsonl and metrics.json to the recipe's output folder.",
        epilog="examples:\n  cace-calc train pretrained/water/train.yaml\n"
               "  cace-calc train pretrained/water/train.yaml --resume      # after an interruption")
    p.add_argument("config", help="the YAML training recipe")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its checkpoint.pt (same recipe)")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides the recipe's)")
    p.add_argument("--epochs", type=int, metavar="N", help="number of epochs (overrides the recipe's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (overrides the recipe's)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    import torch

    from ..train import TrainConfig, train

    cfg = TrainConfig.from_yaml(args.config)
    if args.output:
        cfg.output = args.output
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
    if args.device:
        cfg.training.device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg.validate()
    train(cfg, resume=args.resume)
    return 0


def add_finetune(sub):
    p = sub.add_parser(
        "finetune", help="adapt a trained model to your own labelled structures",
        description="Fine-tune MODEL (a pretrained name or model file) on the labelled structures in DATA "
                    "(energies and forces; stress is used when every structure has one), keeping its "
                    "architecture: E0 refitted to the data's energy reference (unless --keep-e0), a small "
                    "learning rate, EMA, the best epoch on the validation structures and an early stop. "
                    "Writes model.pt (naming the parent and the data), log.jsonl, metrics.json and errors.json "
                    "(before/after) to --output and prints the errors before and after.",
        epilog="examples:\n  cace-calc finetune water my_frames.xyz --output ft-water\n"
               "  cace-calc finetune nbmotaw a.xyz b.xyz --epochs 50 --valid-fraction 0.1 --keep-e0")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("data", nargs="+", metavar="DATA", help="labelled structure files (extended XYZ or any ASE reads)")
    p.add_argument("--output", default="finetuned", metavar="DIR", help="output folder (default ./finetuned)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="most epochs (default 100; stops early)")
    p.add_argument("--valid-fraction", type=float, default=0.2, metavar="F",
                   help="fraction of the structures that pick the best epoch (default 0.2, at least one)")
    p.add_argument("--keep-e0", action="store_true", help="keep the parent's per-element reference energies")
    p.add_argument("--replay", nargs="+", metavar="FILE", default=None,
                   help="structures of the parent's own data (same DFT set-up) trained on beside DATA, so that "
                        "the model keeps what it knew")
    p.add_argument("--replay-weight", type=float, default=None, metavar="W",
                   help="loss weight of the replayed structures (default 0.3)")
    p.add_argument("--trainable", choices=["all", "readout"], default="all",
                   help="what trains: all weights (default) or the readout only (the representation stays the parent's)")
    p.add_argument("--representation-lr", type=float, default=1.0, metavar="F",
                   help="the representation's learning rate as a factor of the readout's (default 1)")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.set_defaults(run=run_finetune)


def run_finetune(args) -> int:
    import torch

    from ..train.finetune import EPOCHS, REPLAY_WEIGHT, finetune

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.replay_weight is not None and not args.replay:
        raise ValueError("--replay-weight needs --replay FILE...")
    weight = REPLAY_WEIGHT if args.replay_weight is None else args.replay_weight
    if not weight > 0:
        raise ValueError(f"--replay-weight must be positive, got {weight}")
    if not args.representation_lr > 0:
        raise ValueError(f"--representation-lr must be positive, got {args.representation_lr}")
    res = finetune(args.model, args.data, output=args.output, epochs=args.epochs or EPOCHS,
                   valid_fraction=args.valid_fraction, device=args.device, keep_e0=args.keep_e0,
                   trainable=args.trainable, representation_lr=args.representation_lr, replay=args.replay,
                   replay_weight=weight)
    print(res.table)
    print(f"wrote {res.run.output / 'model.pt'} (use it as --model)")
    return 0
