"""Sample quality of a prior on the space groups of the paper's Table 1 (prints figures, plots).

For each group: structural validity (distances above 0.5 A, no site collisions), the fraction whose
expanded structure spglib (symprec 0.1) assigns the requested group, the charge-balanced fraction
(SMACT), and the atoms-per-cell distribution against the training data (total-variation distance;
a plot like the paper's Fig. 4), and the largest difference between the log p the sampler
recorded and `log_prob` of the crystals it returned (zero up to float32 round-off).

    python benchmarks/prior_quality.py [--prior PATH] [--num 200] [--out runs/prior_quality]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

GROUPS = (2, 12, 62, 139, 166, 194, 225)


def atoms_per_cell(arrays) -> np.ndarray:
    from cfmc import wyckoff as wy

    m = wy.tables().multiplicity[np.asarray(arrays.spacegroup)[:, None], np.asarray(arrays.wyckoff)]
    return (m * np.asarray(arrays.mask)).sum(1)


def tv_distance(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = Counter(a.tolist()), Counter(b.tolist())
    keys = set(ca) | set(cb)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in keys)


def closest_pair(crystal) -> tuple[int, float]:
    """For a crystal with a short contact: how many sites apart in the sequence its two closest
    atoms are (0: two images of one site) and their distance in Angstrom."""
    from cfmc import wyckoff as wy

    structure = crystal.to_structure()
    site = np.concatenate(
        [np.full(len(wy.orbit(crystal.spacegroup, w, x)), k)
         for k, (w, x) in enumerate(zip(crystal.wyckoff, crystal.coords, strict=True))]
    )
    d = structure.lattice.get_all_distances(structure.frac_coords, structure.frac_coords)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return abs(int(site[i]) - int(site[j])), float(d[i, j])


def main() -> None:
    import jax
    from cfmc.priors import load_prior, log_prob
    from cfmc.priors.sample import sample_with_log_prob
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from cfmc.chemistry import charge_balanced, structurally_valid
    from cfmc.crystal import from_arrays
    from cfmc.data import load_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", default=None)
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/prior_quality"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_prior(args.prior)
    train = load_dataset(progress=False).arrays
    train_atoms = atoms_per_cell(train)
    rows = []
    key = jax.random.PRNGKey(args.seed)
    per_group = {}
    print(f"{'group':>5} {'valid':>7} {'spglib=g':>9} {'balanced':>9} {'TV(atoms)':>10} "
          f"{'|dlogp|':>8} {'s':>6}")
    for g in GROUPS:
        key, sub = jax.random.split(key)
        t = time.time()
        arrays, recorded = sample_with_log_prob(model, sub, g, args.num,
                                                temperature=args.temperature)
        # The sampler's own record of log p against log_prob of the result (exact: equal).
        dlogp = float(np.max(np.abs(np.asarray(recorded.total)
                                    - np.asarray(log_prob(model, arrays).total))))
        crystals = from_arrays(arrays)
        valid = same = balanced = 0
        contacts = []  # (sites apart, distance) of the closest pair of each invalid crystal
        for c in crystals:
            ok, why = structurally_valid(c)
            valid += ok
            if not ok and why.startswith("atoms"):
                contacts.append(closest_pair(c))
            if ok:
                try:
                    same += SpacegroupAnalyzer(c.to_structure(), 0.1).get_space_group_number() == g
                except Exception:
                    pass
            balanced += charge_balanced(c.composition)
        atoms = atoms_per_cell(arrays)
        ref = train_atoms[np.asarray(train.spacegroup) == g]
        tv = tv_distance(atoms, ref)
        dt = time.time() - t
        n = len(crystals)
        rows.append(dict(group=g, n=n, valid=valid / n, same_group=same / n, max_dlogp=dlogp,
                         charge_balanced=balanced / n, tv_atoms=tv, train_count=len(ref),
                         short_contacts_by_site_gap=dict(sorted(Counter(
                             k for k, _ in contacts).items())),
                         short_contact_median_distance=float(np.median([d for _, d in contacts]))
                         if contacts else None))
        per_group[g] = (atoms, ref)
        print(f"{g:>5} {valid / n:7.1%} {same / n:9.1%} {balanced / n:9.1%} {tv:10.3f} "
              f"{dlogp:8.1e} {dt:6.1f}")
    print("invalid crystals: how many sites apart in the sequence their closest atoms are "
          "(0: images of one site), median distance")
    for r in rows:
        med = r["short_contact_median_distance"]
        print(f"{r['group']:>5} {r['short_contacts_by_site_gap']} {med and round(med, 2)}")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in
            ("valid", "same_group", "charge_balanced", "tv_atoms")}
    print("mean  " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    (args.out / "prior_quality.json").write_text(json.dumps({"groups": rows, "mean": mean},
                                                             indent=2))
    _plot(per_group, args.out / "atoms_per_cell.png")
    print(f"written: {args.out}/prior_quality.json, {args.out}/atoms_per_cell.png")


def _plot(per_group, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_group), figsize=(3 * len(per_group), 2.8), sharey=False)
    for ax, (g, (atoms, ref)) in zip(axes, per_group.items(), strict=True):
        hi = int(max(atoms.max(initial=1), ref.max(initial=1))) + 1
        bins = np.arange(0.5, hi + 1.5)
        ax.hist(ref, bins=bins, density=True, alpha=0.5, label="training")
        ax.hist(atoms, bins=bins, density=True, histtype="step", lw=1.5, label="samples")
        ax.set_title(f"space group {g}")
        ax.set_xlabel("atoms per cell")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
