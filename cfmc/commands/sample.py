"""`cfmc sample`: draw crystals of one space group from the prior; CSV plus one CIF per sample."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spacegroup", type=int, required=True, help="space group number 1..230")
    parser.add_argument("--num", type=int, default=1000, help="crystals to draw")
    parser.add_argument("--elements", nargs="+", default=None, help="allowed element symbols")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus filter on species")
    parser.add_argument("--prior", default=None, help="checkpoint directory (default: shipped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    parser.add_argument(
        "--valid-only",
        action="store_true",
        help="redraw crystals that are not structurally valid (atoms closer than 0.5 A, site "
        "collisions): samples the prior restricted to valid crystals",
    )
    parser.add_argument("--max-rounds", type=int, default=20, help="redraw rounds (--valid-only)")


def allowed_species_mask(symbols: list[str] | None):
    """Bool (119,) mask of the given element symbols (None: every element)."""
    import numpy as np
    from pymatgen.core.periodic_table import Element

    if symbols is None:
        return None
    mask = np.zeros(119, bool)
    for s in symbols:
        try:
            mask[Element(s).Z] = True
        except ValueError:
            raise ValueError(f"'{s}' is not an element symbol") from None
    return mask


def run(args: argparse.Namespace) -> int:
    from cfmc.priors.config import enable_compilation_cache

    enable_compilation_cache()
    import jax
    import numpy as np
    import pandas as pd

    from cfmc.arrays import CrystalArrays
    from cfmc.chemistry import structurally_valid
    from cfmc.crystal import from_arrays
    from cfmc.priors import load_prior, sample
    from cfmc.priors.train import log_prob_many
    from cfmc.wyckoff import check_spacegroup

    check_spacegroup(args.spacegroup)
    if args.num < 1:
        raise ValueError(f"--num must be positive, got {args.num}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise FileExistsError(f"{out} is not empty (pass --force to write into it)")
    allowed = allowed_species_mask(args.elements)
    model = load_prior(args.prior)

    def draw(round_: int):
        key = jax.random.fold_in(jax.random.PRNGKey(args.seed), round_)
        drawn = sample(model, key, args.spacegroup, args.num, temperature=args.temperature,
                       top_p=args.top_p, allowed_species=allowed)
        drawn = CrystalArrays(*(np.asarray(f) for f in drawn))
        return drawn, from_arrays(drawn)

    arrays, crystals = draw(0)
    valid = np.array([structurally_valid(c)[0] for c in crystals])
    redrawn = 0
    for r in range(1, args.max_rounds + 1 if args.valid_only else 1):
        bad = np.flatnonzero(~valid)
        if not bad.size:
            break
        more, more_crystals = draw(r)  # same batch shape every round: no recompilation
        ok = np.flatnonzero([structurally_valid(c)[0] for c in more_crystals])[: bad.size]
        fill = bad[: ok.size]
        arrays = CrystalArrays(*(f.copy() for f in arrays))
        for f, g in zip(arrays, more, strict=True):
            f[fill] = g[ok]
        for i, j in zip(fill, ok, strict=True):
            crystals[i] = more_crystals[j]
        valid[fill] = True
        redrawn += fill.size
    terms = log_prob_many(model, arrays)
    cif_dir = out / "cif"
    cif_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for i, crystal in enumerate(crystals):
        row = {"index": i, "spacegroup": args.spacegroup, "string": crystal.to_string()}
        row["formula"], row["logp"], row["cif"], row["error"] = "", float(terms.total[i]), "", ""
        row["valid"] = bool(valid[i])
        try:
            row["formula"] = crystal.formula
            row["cif"] = crystal.to_cif()
            (cif_dir / f"sample_{i:05d}.cif").write_text(row["cif"])
        except Exception as e:  # an unphysical cell (e.g. a negative length) has no structure
            row["error"] = f"{type(e).__name__}: {e}"
            failed += 1
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "samples.csv", index=False)
    print(
        f"{args.num} crystals of space group {args.spacegroup} in {out / 'samples.csv'}; "
        f"mean log p {np.mean(terms.total):.3f}; {len(table) - failed} CIF files in {cif_dir}"
        + (f"; {failed} without a valid structure (see the error column)" if failed else "")
        + f"; {int(valid.sum())} structurally valid"
        + (f" ({redrawn} redrawn)" if args.valid_only else "")
    )
    return 0
