"""The `cfmc` command line: one sub-command per module in `cfmc.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module under cfmc.commands, one-line help); modules load only when their command runs
COMMANDS = {
    "data": ("data", "inspect and convert crystal datasets (CSV in the CDVAE layout)"),
    "convert": ("convert", "convert between CIF and the Wyckoff string of a crystal"),
    "train": ("train", "train the CrystalFormer prior"),
    "sample": ("sample", "draw crystals from the prior for a space group"),
    "logp": ("logp", "log prior probability of each crystal in a dataset, by term"),
    "infill": ("infill", "fill the blanks of a Wyckoff template by MCMC"),
    "predict": ("predict", "predict properties of the crystals in a dataset"),
    "design": ("design", "sample crystals conditioned on target properties"),
    "screen": ("screen", "relax candidates, E_hull against an offline reference hull, S.U.N."),
}


def _load(name: str):
    module, _ = COMMANDS[name]
    return importlib.import_module(f"cfmc.commands.{module}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfmc", description="Bayesian crystal design with a space-group-informed prior."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module is imported (heavy libraries)
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # cfmc's own notices (e.g. a patched legacy checkpoint) at INFO, other libraries' at WARNING
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("cfmc").setLevel(logging.INFO)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"cfmc {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
