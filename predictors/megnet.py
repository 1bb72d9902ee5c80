"""MEGNet band gap and formation energy through matgl (PyG backend, torch on CPU).

The published MEGNet checkpoints were trained with matgl's DGL code, which averaged each
directed edge's message into the edge's destination atom; matgl 4.x's PyG port averages into
the source atom. The weights load without error but read the two end atoms of every edge the
wrong way round (formation energy MAE 0.27 instead of 0.03 eV/atom). `load_megnet` detects such
a legacy checkpoint and swaps, in every block's first edge-MLP weight, the column blocks that
multiply v_i and v_j. That reproduces the DGL model exactly because a periodic neighbour list
holds every edge in both directions: the patched message on i->j equals the DGL message on j->i.

An atom with no neighbour within the cutoff (the large A cations of many halide perovskites) is
predicted as the DGL code the checkpoints were trained with did: it receives no messages, its
aggregated message is zero (DGL fills zeros for nodes with no in-edges; matgl's PyG `scatter_mean`
clamps the count at 1, so zeros too, not NaN), and it still enters the node readout and the state
update. Such crystals are predicted less accurately (benchmarks/predict_failures.py measures it).
Only a graph with no edges at all fails: its edge readout is empty, so the model's output is
meaningless (finite but 0.1-0.6 eV/atom off on the 15 such crystals of mp20_biternary_val).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Predictor

logger = logging.getLogger(__name__)

ENV_MODELS = "CFMC_MODELS"
ENV_SHARED = "CFMC_SHARED"
ENV_THREADS = "CFMC_TORCH_THREADS"
EFORM_MODEL = "MEGNet-MP-2018.6.1-Eform"
BANDGAP_MODEL = "MEGNet-MP-2019.4.1-BandGap-mfi"
FIDELITIES = {"PBE": 0, "GLLB-SC": 1, "HSE": 2, "SCAN": 3}
# model.json metadata key that marks a MEGNet checkpoint saved with matgl's PyG convention
AGGREGATION_KEY = "megnet_edge_aggregation"
_MODEL_FILES = ("model.json", "model.pt", "state.pt")

_models: dict[tuple[str, bool | None], Any] = {}
_models_lock = threading.Lock()


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to `n`: default $CFMC_TORCH_THREADS, else half the usable
    CPUs, at most 4. MEGNet's matrices are small, so more threads mostly add contention
    with the JAX sampler (measured on 2 shared cores: 1 thread ran 4x faster than 2)."""
    import torch

    if n is None:
        env = os.environ.get(ENV_THREADS)
        n = int(env) if env else min(4, len(os.sched_getaffinity(0)) // 2)
    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in _MODEL_FILES)


def find_model_dir(source: str | os.PathLike) -> Path | None:
    """The local checkpoint folder for `source`, or None.

    Looks at `source` as a path, then for a folder of that name in $CFMC_MODELS, in
    $CFMC_SHARED/models, and in the `shared/models` folder beside a source checkout.
    """
    path = Path(source).expanduser()
    if _is_model_dir(path):
        return path
    for root in _model_roots():
        if _is_model_dir(root / path.name):
            return root / path.name
    return None


def _resolve(source: str | os.PathLike) -> Path:
    """A local folder holding the checkpoint, downloading it by name through matgl if needed."""
    local = find_model_dir(source)
    if local is not None:
        return local
    name = str(source)
    if Path(name).expanduser().exists():
        raise FileNotFoundError(f"{name} is not a matgl checkpoint folder (needs {_MODEL_FILES})")
    from matgl.utils.io import _get_file_paths  # matgl's own name -> files resolution

    searched = ", ".join(str(p) for p in _model_roots()) or "no model folders"
    where = f"not a folder, not in {searched} (${ENV_MODELS}, ${ENV_SHARED}/models)"
    cached = _hub_cache(name)  # a download of an earlier session: no network needed
    if cached is not None:
        return cached
    if os.environ.get("CFMC_DOWNLOAD_MODELS") != "1":  # fail fast: no network unless asked
        raise FileNotFoundError(
            f"MEGNet model {name!r} not found: {where}, nor in the Hugging Face cache; put the "
            "checkpoint folder there, or set CFMC_DOWNLOAD_MODELS=1 to let matgl fetch it by name"
        )
    try:
        files = _get_file_paths(Path(name), str_path=name)
    except Exception as e:
        raise FileNotFoundError(
            f"MEGNet model {name!r} not found: {where}, and matgl could not fetch it by "
            f"name ({type(e).__name__}: {e})"
        ) from e
    return Path(files["model.json"]).parent


def _hub_cache(name: str) -> Path | None:
    """The folder of a matgl model already in the Hugging Face cache, else None (offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from matgl.utils.io import HF_MATGL_ORG

        repo = name if "/" in name else f"{HF_MATGL_ORG}/{name}"
        paths = [try_to_load_from_cache(repo, f) for f in _MODEL_FILES]
    except Exception:  # an odd name or an older huggingface_hub: not cached
        return None
    return Path(paths[0]).parent if all(isinstance(p, str) for p in paths) else None


def _model_roots() -> list[Path]:
    """The folders `find_model_dir` looks in for a checkpoint by name."""
    roots = []
    if os.environ.get(ENV_MODELS):
        roots.append(Path(os.environ[ENV_MODELS]).expanduser())
    if os.environ.get(ENV_SHARED):
        roots.append(Path(os.environ[ENV_SHARED]).expanduser() / "models")
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "models")
    return roots


def _inner_class(meta: dict) -> str:
    inner = meta.get("kwargs", {}).get("model")
    if isinstance(inner, dict) and "@class" in inner:
        return str(inner["@class"])
    return str(meta.get("@class", ""))


def is_legacy_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether a checkpoint folder holds a MEGNet trained with the DGL edge direction.

    A MEGNet checkpoint counts as legacy unless its model.json metadata declares
    `{"megnet_edge_aggregation": "source"}` (the PyG convention); every published MEGNet
    checkpoint predates matgl's PyG port and carries no such mark.
    """
    with open(Path(folder) / "model.json") as f:
        meta = json.load(f)
    if _inner_class(meta) != "MEGNet":
        return False
    extra = meta.get("metadata") or {}
    return extra.get(AGGREGATION_KEY) != "source"


def fix_legacy_edge_direction(model: Any) -> int:
    """Swap the v_i / v_j column blocks of each MEGNet block's first edge-MLP weight, in place.

    Returns the number of blocks patched. Raises ValueError if the layout is not MEGNet's.
    """
    import torch

    megnet = getattr(model, "model", model)
    blocks = getattr(megnet, "blocks", None)
    if blocks is None:
        raise ValueError(f"{type(megnet).__name__} has no MEGNet blocks to patch")
    with torch.no_grad():
        for k, block in enumerate(blocks):
            layer = block.conv.edge_func.layers[0]
            w = layer.weight  # (hidden, 2*node + edge + state), input [v_i, v_j, e_ij, u]
            if w.shape[1] % 4:
                raise ValueError(f"block {k}: edge MLP input width {w.shape[1]} is not 4 x dim")
            d = w.shape[1] // 4
            vi = w[:, :d].clone()
            w[:, :d] = w[:, d : 2 * d]
            w[:, d : 2 * d] = vi
    return len(blocks)


def load_megnet(source: str | os.PathLike, legacy: bool | None = None) -> Any:
    """Load a matgl MEGNet model from a folder, $CFMC_MODELS, or by matgl name; eval mode.

    `legacy=None` detects a DGL-era checkpoint (see `is_legacy_checkpoint`) and fixes its
    edge direction; True forces the fix, False loads the weights as they are. Loaded models
    are shared between predictors.
    """
    import matgl
    import torch
    from matgl.data.transformer import Normalizer

    folder = _resolve(source)
    key = (str(folder.resolve()), legacy)
    with _models_lock:
        if key in _models:
            return _models[key]
        # the published checkpoints pickle matgl's Normalizer; torch's safe loader needs it listed
        torch.serialization.add_safe_globals([Normalizer])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Incompatible model version")
            model = matgl.load_model(folder)
        model.eval()
        detected = is_legacy_checkpoint(folder)
        if legacy if legacy is not None else detected:
            n = fix_legacy_edge_direction(model)
            why = "detected: no PyG aggregation mark" if legacy is None else "requested"
            logger.info(
                "%s: legacy MEGNet checkpoint (%s); swapped the v_i/v_j weight columns of the "
                "edge update in %d blocks so edges aggregate as in training",
                folder.name,
                why,
                n,
            )
        else:
            logger.info("%s: loaded MEGNet weights unchanged (legacy=%s)", folder.name, legacy)
        _models[key] = model
        return model


def no_edges_reason(structure: Any, cutoff: float) -> str:
    """The failure reason for a graph with no edges, naming the nearest pair distance."""
    try:
        _, _, _, dist = structure.get_neighbor_list(2.0 * cutoff)
        far = f"no pair within {2.0 * cutoff:g} A"
        nearest = f"nearest pair {np.min(dist):.2f} A" if len(dist) else far
    except Exception:  # the distance is a courtesy; never fail the failure report
        nearest = "nearest pair unknown"
    return f"graph has no edges: no two atoms within the {cutoff:g} A cutoff ({nearest})"


class MEGNetPredictor(Predictor):
    """A matgl MEGNet model as a batched predictor.

    Structures are converted with matgl's `Structure2Graph`, batched with PyG's
    `Batch.from_data_list` (as matgl's collate does) and evaluated in one forward pass per
    `batch_size` structures. Atoms with no neighbour within the cutoff are predicted as in
    training (they receive no messages), with one logged warning per batch; with
    `allow_isolated=False` such structures fail instead. A graph with no edges at all, or an
    element the model does not know, is reported as a failure.
    """

    model_name: str = ""

    def __init__(
        self,
        model: str | os.PathLike | Any | None = None,
        batch_size: int = 128,
        legacy: bool | None = None,
        threads: int | None = None,
        cache_size: int = 100_000,
        allow_isolated: bool = True,
    ) -> None:
        super().__init__(cache_size=cache_size)
        set_torch_threads(threads)
        self.allow_isolated = bool(allow_isolated)
        source = model if model is not None else self.model_name
        self.model = source if hasattr(source, "forward") else load_megnet(source, legacy)
        self.batch_size = int(batch_size)
        megnet = getattr(self.model, "model", self.model)
        self._element_types = tuple(megnet.element_types)
        self._elements = set(self._element_types)
        self.cutoff = float(megnet.cutoff)
        from matgl.ext.pymatgen import Structure2Graph

        self._converter = Structure2Graph(element_types=self._element_types, cutoff=self.cutoff)

    def _state(self, default: np.ndarray) -> Any:
        """The model's state input for one graph (the converter's default)."""
        import torch

        return torch.as_tensor(np.asarray(default), dtype=torch.float32)

    def _graph(self, structure: Any) -> tuple[Any, Any, int] | str:
        """(graph with positions, state, number of isolated atoms) for one structure, or why
        it cannot be predicted."""
        import torch

        unknown = {el.symbol for el in structure.composition.elements} - self._elements
        if unknown:
            return f"element(s) {', '.join(sorted(unknown))} not supported by the model"
        if not structure.is_ordered:
            return "disordered structure (partial occupancies) not supported"
        g, lat, state = self._converter.get_graph(structure)
        src = g.edge_index[0].numpy()
        if src.size == 0:
            return no_edges_reason(structure, self.cutoff)
        n = len(structure)
        deg_out = np.bincount(src, minlength=n)
        lonely = np.flatnonzero(deg_out == 0)
        if lonely.size and not self.allow_isolated:
            names = ", ".join(f"{structure[int(i)].specie}{int(i)}" for i in lonely[:5])
            return f"isolated atom(s) with no neighbour within {self.cutoff:g} A: {names}"
        if not np.array_equal(deg_out, np.bincount(g.edge_index[1].numpy(), minlength=n)):
            # the direction fix relies on every edge having its reverse
            return "neighbour list is not symmetric"
        g.pbc_offshift = torch.matmul(g.pbc_offset, lat[0])
        g.pos = torch.matmul(g.frac_coords, lat[0])
        return g, self._state(state), int(lonely.size)

    def _predict_batch(self, structures: list[Any]) -> Sequence[float | str]:
        import torch
        from torch_geometric.data import Batch

        out: list[float | str] = [0.0] * len(structures)
        ready: list[tuple[int, Any, Any]] = []
        isolated: list[str] = []  # formulas of the structures with isolated atoms
        for i, s in enumerate(structures):
            try:
                built = self._graph(s)
            except Exception as e:
                built = f"graph construction failed: {type(e).__name__}: {e}"[:300]
            if isinstance(built, str):
                out[i] = built
                continue
            g, state, n_isolated = built
            ready.append((i, g, state))
            if n_isolated:
                isolated.append(s.composition.reduced_formula)
        if isolated:
            shown = ", ".join(isolated[:3]) + (", ..." if len(isolated) > 3 else "")
            logger.warning(
                "%s: %d of %d structures have atoms with no neighbour within %g A (%s); "
                "predicted with those atoms receiving no messages, as in training",
                self.name,
                len(isolated),
                len(structures),
                self.cutoff,
                shown,
            )
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            batch = Batch.from_data_list([g for _, g, _ in chunk])
            state = torch.stack([s for _, _, s in chunk])
            with torch.no_grad():
                y = self.model(g=batch, state_attr=state).reshape(-1).numpy()
            for (i, _, _), v in zip(chunk, y, strict=True):
                out[i] = float(v)
        return out


class MEGNetFormationEnergy(MEGNetPredictor):
    """Formation energy per atom (eV/atom), MEGNet trained on MP-2018.6.1.

    `typical_error` is the upstream test MAE (0.028 eV/atom), rounded.
    """

    name = "formation_energy"
    units = "eV/atom"
    typical_error = 0.03
    model_name = EFORM_MODEL


class MEGNetBandGap(MEGNetPredictor):
    """Band gap (eV) from the multi-fidelity MEGNet (MP-2019.4.1); PBE (state 0) by default.

    `fidelity` is one of PBE, GLLB-SC, HSE, SCAN (or its index 0-3). `typical_error` is the
    upstream validation MAE over fidelities (0.314 eV), rounded.
    """

    name = "band_gap"
    units = "eV"
    typical_error = 0.3
    model_name = BANDGAP_MODEL

    def __init__(
        self,
        model: str | os.PathLike | Any | None = None,
        fidelity: str | int = "PBE",
        batch_size: int = 128,
        legacy: bool | None = None,
        threads: int | None = None,
        cache_size: int = 100_000,
        allow_isolated: bool = True,
    ) -> None:
        if isinstance(fidelity, str):
            if fidelity.upper() not in FIDELITIES:
                raise ValueError(f"unknown fidelity {fidelity!r}; choose from {list(FIDELITIES)}")
            self.fidelity = FIDELITIES[fidelity.upper()]
        else:
            if int(fidelity) not in FIDELITIES.values():
                raise ValueError(f"fidelity index must be 0..3, got {fidelity}")
            self.fidelity = int(fidelity)
        if self.fidelity != 0:
            label = next(k for k, v in FIDELITIES.items() if v == self.fidelity)
            self.name = "band_gap_" + label.lower().replace("-", "_")
        super().__init__(model, batch_size, legacy, threads, cache_size, allow_isolated)

    def _state(self, default: np.ndarray) -> Any:
        import torch

        return torch.tensor(self.fidelity, dtype=torch.long)
