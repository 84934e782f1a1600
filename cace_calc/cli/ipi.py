"""``cace-calc ipi``: serve a running i-PI simulation as a force driver."""

from __future__ import annotations

import sys


def add_ipi(sub):
    p = sub.add_parser(
        "ipi", help="serve a running i-PI simulation as a force driver (socket client)",
        description="Connect to a running i-PI server and answer its force requests (energy, forces, "
                    "virial in i-PI's atomic units) until i-PI ends the run. Several drivers may serve "
                    "one run. i-PI sends no elements: give --template (same atom order as i-PI's input) "
                    "unless i-PI's <ffsocket> has <parameters>{symbols: OHH...}</parameters> (as written "
                    "by cace-calc pimd).",
        epilog="examples:\n  cace-calc ipi --model water --unix water --template start.xyz\n"
               "  cace-calc ipi --model water --host node01 --port 31415 --template start.xyz --wait 60")
    p.add_argument("--model", required=True, help="pretrained model name (see `cace-calc info`) or model file")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", metavar="NAME", help="unix socket NAME (the file /tmp/ipi_NAME, i-PI's <address>)")
    where.add_argument("--host", help="inet host name or address of the i-PI server")
    p.add_argument("--port", type=int, help="inet port of the i-PI server (with --host)")
    p.add_argument("--template", metavar="FILE", help="structure file with i-PI's atoms in the same order")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="model precision (float64)")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="keep trying to connect for S seconds while i-PI starts (default 0)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up when i-PI sends nothing for S seconds (default: wait as long as i-PI needs)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--committee", action="store_true",
                   help="also send every readout head's energy, forces and virial for i-PI's <ffcommittee> "
                        "with <parse_json>true</parse_json> (models with several heads; on by itself when "
                        "the <ffsocket> parameters say committee: true, as written by cace-calc pimd --uncertainty)")
    p.add_argument("--uncertainty-log", metavar="FILE",
                   help="committee: write the largest calibrated force uncertainty (one sigma, eV/A) of each call "
                        "of i-PI, its structure and atom, to FILE (implies --committee). A committee driver always "
                        "warns once on stderr when it passes the model's threshold")
    p.add_argument("--max-uncertainty", type=float, metavar="EV_PER_A",
                   help="committee: when an atom's force uncertainty passes this, create the file EXIT in the "
                        "current directory, which makes i-PI end the run after the current step when this is "
                        "i-PI's folder, and write the structures of that call to uncertain.extxyz (implies "
                        "--committee)")
    p.set_defaults(run=run_ipi)


def run_ipi(args) -> int:
    import torch

    from ..ipi import CACEDriver, DriverProtocolError

    if args.host is not None and args.port is None:
        raise ValueError("--host needs --port")
    if args.unix is not None and args.port is not None:
        raise ValueError("--port goes with --host, not with --unix")
    if args.threads:
        torch.set_num_threads(args.threads)
    driver = CACEDriver(args.model, template=args.template, device=args.device, dtype=args.dtype,
                        committee=args.committee, uncertainty_log=args.uncertainty_log,
                        max_uncertainty=args.max_uncertainty)
    try:
        n = driver.run(unix=args.unix, host=args.host, port=args.port, wait=args.wait, timeout=args.timeout)
    except DriverProtocolError as e:
        print(f"cace-calc ipi: error: {e}", file=sys.stderr)
        return 1
    print(f"i-PI ended the run; {n} structures evaluated")
    if driver.watch is not None:
        print(driver.watch.summary())
    return 0
