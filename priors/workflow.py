"""Training a prior end to end: pick the starting point (a named config, a checkpoint to
fine-tune or extend, or the run to resume), read the data, and train (`priors.train`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from .config import PriorConfig, get_config
from .model import CrystalFormer
from .train import TrainOptions, TrainResult, train

log = logging.getLogger(__name__)


def starting_point(
    out: Path, config: str = "default", init: str | None = None,
    fourier_features: int | None = None, exclusion_zone: bool = False, resume: bool = False,
    force: bool = False,
) -> tuple[PriorConfig, CrystalFormer | None]:
    """The config to train and, when fine-tuning, the model to start from ('default': the
    shipped prior). The checkpoint's weights fix its config; a resumed run reads its own."""
    if init is not None and resume:
        raise ValueError(
            "--init starts a new run from given weights; it cannot be combined with --resume"
        )
    if fourier_features is not None and init is None:
        raise ValueError("--fourier-features widens the checkpoint given by --init")
    if exclusion_zone and init is None:
        raise ValueError(
            "--exclusion-zone extends the checkpoint given by --init (for a new model, use a "
            "config with exclusion=True)"
        )
    if resume:
        cfg_file = out / "last" / "config.json"
        if not cfg_file.exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {out / 'last'}")
        return PriorConfig.from_dict(json.loads(cfg_file.read_text())), None
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(
            f"{out} is not empty: pass --resume to continue that run or --force to start afresh"
        )
    if init is None:
        return get_config(config), None
    from .io import load_prior
    from .model import with_exclusion_zone, with_fourier_features

    model = load_prior(None if init == "default" else init)
    if fourier_features is not None:
        model = with_fourier_features(model, fourier_features)
    if exclusion_zone:
        model = with_exclusion_zone(model)
    log.info("starting from the weights of %s (config %s)", init, model.config)
    return model.config, model


def train_prior(
    csv: Sequence[str] | None, out: str | Path, options: TrainOptions, config: str = "default",
    init: str | None = None, fourier_features: int | None = None, exclusion_zone: bool = False,
    resume: bool = False, force: bool = False, limit: int | None = None,
) -> TrainResult:
    """Train a prior on CSV files in the CDVAE layout (None: the default training mix) into the
    run directory `out` (best and last checkpoints, log, learning curve, skipped rows)."""
    from cfmc.data import load_dataset

    out = Path(out)
    cfg, model = starting_point(out, config, init, fourier_features, exclusion_zone, resume,
                                force)
    data = load_dataset(csv, max_sites=cfg.max_sites, limit=limit, progress=options.progress)
    log.info("data: %d crystals converted, skipped: %s", len(data),
             data.skip_counts() or "none")
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_skipped.csv").write_text(data.skipped.to_csv(index=False))
    return train(data.arrays, cfg, out, options, resume=resume, model=model)
