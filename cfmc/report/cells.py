"""Pictures of conventional cells: a small PNG per crystal, atoms coloured by element (Jmol
colours), the cell edges drawn and a legend of the elements.

Drawn as an orthographic projection with plain 2-D matplotlib artists on one reused Agg figure
(no pyplot, no 3-D axes, no processes): tens of milliseconds a picture, so a report of a few hundred
candidates stays fast, and a notebook's matplotlib backend is left alone.
"""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Sequence

import numpy as np

# a view from slightly in front of, right of and above the cell: c up, a to the right-front
_AZIMUTH, _ELEVATION = np.radians(-62.0), np.radians(16.0)
_EDGES = [(i, j) for i, j in itertools.combinations(range(8), 2) if bin(i ^ j).count("1") == 1]
_CORNERS = np.array(list(itertools.product((0, 1), repeat=3)), float)
LEGEND_COLUMNS = 4
BOUNDARY_TOL = 1e-3  # an atom this close to a face is drawn on the opposite face too


def _view() -> np.ndarray:
    """Rows: screen x, screen y, depth (towards the viewer) as directions in Cartesian space."""
    ca, sa, ce, se = np.cos(_AZIMUTH), np.sin(_AZIMUTH), np.cos(_ELEVATION), np.sin(_ELEVATION)
    toward = np.array([ca * ce, sa * ce, se])
    right = np.array([-sa, ca, 0.0])
    up = np.cross(toward, right)
    return np.stack([right, up, toward])


def boundary_images(frac: np.ndarray, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wrap fractional coordinates into [0, 1) and add the periodic images that lie on the cell's
    faces, edges and corners (an atom at 0 is also drawn at 1), as a conventional-cell picture
    shows them."""
    frac = np.mod(np.asarray(frac, float), 1.0)
    frac[np.isclose(frac, 1.0, atol=BOUNDARY_TOL)] = 0.0
    out_f, out_z = [frac], [np.asarray(numbers)]
    on_face = frac < BOUNDARY_TOL
    for shift in _CORNERS[1:]:
        take = np.all(on_face | (shift == 0), axis=1)
        if take.any():
            out_f.append(frac[take] + shift)
            out_z.append(np.asarray(numbers)[take])
    return np.concatenate(out_f), np.concatenate(out_z)


class CellPainter:
    """Draws cells to PNG bytes on one reused figure (create one per report, not per picture)."""

    def __init__(self, size_px: int = 220, dpi: int = 100, radius_scale: float = 0.55) -> None:
        from ase.data import chemical_symbols, covalent_radii
        from ase.data.colors import jmol_colors
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.radius_scale = radius_scale
        self._colors = np.asarray(jmol_colors, float)
        self._radii = np.asarray(covalent_radii, float)
        self._symbols = list(chemical_symbols)
        self._fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
        FigureCanvasAgg(self._fig)
        self._ax = self._fig.add_axes((0, 0, 1, 1))  # reused: creating axes costs more than drawing
        self._ax.set_axis_off()
        self._view = _view()

    def paint(self, matrix: np.ndarray, frac: np.ndarray, numbers: Sequence[int]) -> bytes:
        """PNG of the cell with lattice vectors as rows of `matrix` and atoms at `frac`."""
        from matplotlib.collections import EllipseCollection, LineCollection
        from matplotlib.lines import Line2D

        matrix = np.asarray(matrix, float)
        frac, z = boundary_images(frac, np.asarray(numbers, int))
        center = 0.5 * matrix.sum(axis=0)
        atoms = (frac @ matrix - center) @ self._view.T
        corners = (_CORNERS @ matrix - center) @ self._view.T
        radius = self._radii[z] * self.radius_scale
        color = self._colors[z]

        present = sorted(set(z.tolist()))
        legend_rows = -(-len(present) // LEGEND_COLUMNS)
        bottom = 0.03 + 0.1 * legend_rows
        fig, ax = self._fig, self._ax
        for artist in [*ax.collections, *fig.legends]:
            artist.remove()
        ax.set_position((0.02, bottom, 0.96, 0.98 - bottom))
        extent = np.concatenate([corners[:, :2], atoms[:, :2] - radius[:, None],
                                 atoms[:, :2] + radius[:, None]])
        lo, hi = extent.min(0), extent.max(0)
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo).max() * 1.02
        box = fig.get_size_inches() * np.array([0.96, 0.98 - bottom])  # keep circles round
        ax.set_xlim(mid[0] - half * box[0] / box.min(), mid[0] + half * box[0] / box.min())
        ax.set_ylim(mid[1] - half * box[1] / box.min(), mid[1] + half * box[1] / box.min())

        segments = corners[np.array(_EDGES)]  # (12, 2 points, xyz)
        front = segments[:, :, 2].mean(1) > 0
        edge_style = {"colors": "0.15", "linewidths": 1.0}
        ax.add_collection(LineCollection(segments[~front, :, :2], zorder=1, **edge_style))
        ax.add_collection(LineCollection(segments[front, :, :2], zorder=3, alpha=0.7,
                                         **edge_style))

        # painter's order, far atoms first; each ball followed by its highlight so nearer balls
        # cover both
        order = np.argsort(atoms[:, 2], kind="stable")
        n = order.size
        xy = np.empty((2 * n, 2))
        xy[0::2] = atoms[order, :2]
        xy[1::2] = atoms[order, :2] + radius[order, None] * np.array([-0.3, 0.3])
        size = np.empty(2 * n)
        size[0::2] = 2 * radius[order]
        size[1::2] = 0.8 * radius[order]
        faces = np.empty((2 * n, 4))
        faces[0::2, :3], faces[0::2, 3] = color[order], 1.0
        faces[1::2] = (1.0, 1.0, 1.0, 0.45)
        edges = np.zeros((2 * n, 4))
        edges[0::2] = (0.2, 0.2, 0.2, 1.0)
        widths = np.zeros(2 * n)
        widths[0::2] = 0.5
        ax.add_collection(EllipseCollection(
            size, size, np.zeros(2 * n), units="xy", offsets=xy, offset_transform=ax.transData,
            facecolors=faces, edgecolors=edges, linewidths=widths, zorder=2,
        ))

        handles = [Line2D([], [], ls="none", marker="o", ms=8, mfc=self._colors[e], mec="0.2",
                          mew=0.5, label=self._symbols[e]) for e in present]
        if handles:
            fig.legend(handles=handles, loc="lower center", fontsize=9, frameon=False,
                       ncol=min(len(handles), LEGEND_COLUMNS), handletextpad=0.05,
                       columnspacing=0.5, borderaxespad=0.2)
        return self._png()

    def _png(self) -> bytes:
        """The figure as a 64-colour palette PNG: a fifth of the bytes of full colour, with no
        visible loss on flat-shaded balls."""
        from PIL import Image

        canvas = self._fig.canvas
        canvas.draw()
        rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
        buf = io.BytesIO()
        rgb.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(buf, format="png",
                                                                        optimize=True)
        return buf.getvalue()


def structure_arrays(cif: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice matrix, fractional coordinates and atomic numbers of the cell a CIF describes,
    expanded by its symmetry operations (the conventional cell that CifWriter wrote).

    ASE parses the CIF; the orbits are expanded here with numpy, all operations at once (ASE's
    own expansion loops in Python and takes most of the time). Good to drawing precision: images
    closer than 1e-4 in fractional coordinates merge. ASE's full reader, then pymatgen's, are the
    fallbacks for CIFs this does not handle."""
    with warnings.catch_warnings():  # rounding and occupancy notices on symmetrised CIFs
        warnings.simplefilter("ignore")
        try:
            return _expand(cif)
        except Exception:  # any parsing trouble: the slower, more general readers
            pass
        try:
            from ase.io import read

            atoms = read(io.StringIO(cif), format="cif")
            return (np.asarray(atoms.cell[:], float), atoms.get_scaled_positions(wrap=True),
                    atoms.numbers.copy())
        except Exception:  # let pymatgen try (and raise for an unreadable CIF)
            from pymatgen.core import Structure

            s = Structure.from_str(cif, fmt="cif")
    if not s.is_ordered:
        raise ValueError("a disordered structure has no single picture")
    return s.lattice.matrix, s.frac_coords, np.array([site.specie.Z for site in s])


def _expand(cif: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ase.io.cif import parse_cif

    block = next(b for b in parse_cif(io.StringIO(cif)) if b.has_structure())
    asym = block.get_unsymmetrized_structure()
    rotations, translations = block.get_spacegroup(True).get_op()
    x = asym.get_scaled_positions(wrap=False)
    images = np.einsum("oij,nj->noi", rotations, x) + translations[None]  # (sites, ops, 3)
    keys = np.mod(np.rint(images * 1e4).astype(np.int64), 10_000)
    frac, numbers = [], []
    for site, z in enumerate(asym.numbers):
        _, first = np.unique(keys[site], axis=0, return_index=True)
        frac.append(np.mod(images[site, np.sort(first)], 1.0))
        numbers.append(np.full(first.size, z))
    return np.asarray(asym.cell[:], float), np.concatenate(frac), np.concatenate(numbers)
