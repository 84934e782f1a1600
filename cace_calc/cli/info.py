"""``cace-calc info``: version, device and the pretrained models."""

from __future__ import annotations


def add_info(sub):
    p = sub.add_parser("info", help="version, device and the available models",
                       description="Print the version, the compute device and the pretrained models.",
                       epilog="example:\n  cace-calc info")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    import torch

    from .. import __version__
    from ..checkpoint import ALIASES, available_models, load_model

    print(f"cace_calc {__version__}, torch {torch.__version__}, "
          f"CUDA {'available: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}")
    names = available_models()
    print("pretrained models:" if names else "pretrained models: none installed")
    for name in names:
        m = load_model(name)
        from ase.data import chemical_symbols

        elems = " ".join(chemical_symbols[z] for z in m.config.elements)
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        alias = f" (alias {', '.join(aliases)})" if aliases else ""
        print(f"  {name}{alias}: {elems}, cutoff {m.cutoff} A, {m.metadata.get('description', '')}")
        test = (m.metadata.get("metrics") or {}).get("test")
        if test:
            stress = f", stress {test['stress_rmse_gpa']:.3f} GPa" if "stress_rmse_gpa" in test else ""
            print(f"    test-split RMSE ({test['n_structures']} structures never trained on): "
                  f"E {test['energy_rmse_mev_per_atom']:.2f} meV/atom, F {test['forces_rmse_mev_per_a']:.1f} "
                  f"meV/A{stress}")
    return 0
