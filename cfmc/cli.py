"""The `cfmc` command line: one sub-command per module in `cfmc.commands`."""

from __future__ import annotations

import argparse
import errno
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
    "report": ("report", "build a run directory's report.html (one self-contained page)"),
    "screen": ("screen", "relax candidates, E_hull against an offline reference hull, S.U.N."),
}


def _load(name: str):
    module, _ = COMMANDS[name]
    return importlib.import_module(f"cfmc.commands.{module}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfmc", description="Bayesian crystal design with a space-group-informed prior."
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
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
    if args.command not in ("convert", "data", "report"):  # commands that compile JAX programs
        from cfmc.priors.config import enable_compilation_cache

        enable_compilation_cache()
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line per error; --debug shows the traceback
        if args.debug:
            raise
        code, kind = exit_code(e)
        print(f"cfmc {args.command}: {kind}: {one_line(e)}", file=sys.stderr)
        return code


def exit_code(e: BaseException) -> tuple[int, str]:
    """(2, 'error') for bad input (values, missing or existing files, a locked run directory);
    (1, 'failed') for a failure while running (I/O errors such as a full disk, bugs)."""
    if isinstance(e, ValueError | FileNotFoundError | FileExistsError | NotADirectoryError
                  | IsADirectoryError):
        return 2, "error"
    return 1, "failed"


def one_line(e: BaseException) -> str:
    """The message of `e` on one line; I/O errors and unexpected ones name their type."""
    text = " ".join(str(e).split())
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError | FileExistsError):
        hint = " (disk full?)" if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
        return f"{text}{hint}; files written before the error are kept"
    if not isinstance(e, ValueError | OSError):
        return f"{type(e).__name__}: {text or 'no message'} (run with --debug for the traceback)"
    return text


if __name__ == "__main__":
    sys.exit(main())
