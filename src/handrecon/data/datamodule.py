"""A LightningDataModule generic over dataset factories (FreiHAND, HO3D, synthetic, ...).

Datasets are given as factories (Hydra configs with ``_target_`` and ``_partial_: true``, which
Hydra instantiates to ``functools.partial``; any callable; or a config node still to be
instantiated) or as ready Dataset objects. With ``val_fraction > 0`` the validation set is held
out of the training set's sample ids (:func:`split_ids`, fixed ``seed``; whole groups such as
HO3D sequences stay on one side; every version of a FreiHAND sample goes with its id) and built
with the ``val_dataset`` factory (or the training dataset without augmentation). The datasets
must then offer ``all_ids``, ``with_ids(ids)`` and optionally ``id_groups``.

DDP: every process builds the same datasets and split in ``setup``; the DataLoaders use plain
``shuffle`` so Lightning substitutes its DistributedSampler (``use_distributed_sampler``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)

#: what a data set's validation can measure: 3d (3D ground truth: PA-MPJPE, ...) or 2d (only the
#: detections: keypoint error, photometric terms); the stage's ``monitors`` entry of it picks checkpoints
LABELS: tuple[str, ...] = ("3d", "2d")


def split_ids(n: int, val_fraction: float, seed: int = 0, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..n-1 into (train, val), sorted, disjoint, covering all, deterministic in ``seed``.

    round(n * val_fraction) positions go to val (at least one when val_fraction > 0 and n > 1),
    chosen by a seeded permutation. With ``groups`` (n labels), whole groups are drawn until the
    val share is reached, so no group is on both sides.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = int(n)
    all_pos = np.arange(n)
    if val_fraction == 0 or n == 0:
        return all_pos, np.zeros(0, np.int64)
    if n < 2:
        raise ValueError(f"cannot hold out a validation share of {n} sample(s)")
    target = min(max(1, int(round(n * val_fraction))), n - 1)
    rng = np.random.default_rng(seed)
    if groups is None:
        val = np.sort(rng.permutation(n)[:target])
    else:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise ValueError(f"split_ids: {len(groups)} group labels for {n} samples")
        uniq = np.unique(groups)
        if len(uniq) < 2:
            raise ValueError(f"split_ids: all {n} samples are in one group ({uniq[0]!r}); cannot split by group")
        chosen, count = [], 0
        for g in rng.permutation(uniq):
            if count >= target or len(chosen) == len(uniq) - 1:
                break
            chosen.append(g)
            count += int((groups == g).sum())
        val = np.flatnonzero(np.isin(groups, chosen))
    train = np.setdiff1d(all_pos, val)
    return train, val


class ResumableRandomSampler(torch.utils.data.Sampler):
    """The training order, resumable mid-epoch: epoch e is a permutation drawn from ``(seed, e)``
    alone (Lightning calls ``set_epoch``), and :meth:`skip_next` makes the next pass start after
    the batches a killed run had already trained on. With ``keyed=True`` it yields
    ``(index, draw_seed)``, draw_seed = ``(seed, e, index)``, so a sample's augmentation depends on
    nothing else (not on worker processes or on how far the global RNG has run)."""

    def __init__(self, n: int, seed: int = 0, keyed: bool = False, epoch_source=None) -> None:
        self.n, self.seed, self.keyed = int(n), int(seed), bool(keyed)
        self.epoch = 0
        # where the epoch number comes from at each pass (the trainer's current_epoch): Lightning's
        # set_epoch argument is one ahead on the first pass after a mid-epoch restore
        self.epoch_source = epoch_source
        self._skip: tuple[int, int] | None = None  # (epoch, samples) to skip on the next pass

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, epoch: int, samples: int) -> None:
        self._skip = (int(epoch), int(samples))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        start = 0
        if self._skip is not None:  # the first pass after a restore: exactly where the saved run stood
            # (the epoch source may still name the finished epoch: worker processes fetch ahead at once)
            self.epoch, start = self._skip[0], min(self._skip[1], self.n)
            self._skip = None
        elif self.epoch_source is not None:
            self.epoch = int(self.epoch_source())
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        for i in order[start:]:
            yield (i, (self.seed, self.epoch, i)) if self.keyed else i


def _is_config(x) -> bool:
    return hasattr(x, "keys") and "_target_" in x


def build_dataset(spec, **kwargs) -> Dataset | None:
    """A Dataset from a factory / config / object (``kwargs`` go to the factory)."""
    if spec is None:
        return None
    if isinstance(spec, Dataset):
        if kwargs:
            raise TypeError(f"cannot pass {sorted(kwargs)} to a ready dataset object {type(spec).__name__}")
        return spec
    if _is_config(spec) or isinstance(spec, Mapping):
        if not _is_config(spec):
            raise ValueError(f"dataset config needs a '_target_' (got keys {sorted(spec)})")
        from hydra.utils import instantiate

        obj = instantiate(spec, **kwargs)
        return obj() if callable(obj) and not isinstance(obj, Dataset) else obj
    if callable(spec):
        return spec(**kwargs)
    raise TypeError(f"dataset must be a Dataset, a factory or a Hydra config, got {type(spec).__name__}")


class HandDataModule(pl.LightningDataModule):
    """Train / val / test DataLoaders over dataset factories (see the module docstring).

    ``root``, ``image_size``, ``name``, ``version`` and ``detections_dir`` are informational (Hydra configs interpolate them into
    the dataset nodes) and appear in :meth:`describe`. So are two facts of the dataset's ground truth:
    ``mano_tip_vertex_ids`` (the MANO vertices it takes as fingertips; ``hand_model=mano`` interpolates them)
    and ``mesh_needs_mano`` (its official scorer compares MANO meshes).
    """

    def __init__(
        self,
        train_dataset: Callable[..., Dataset] | Dataset | Mapping | None = None,
        val_dataset: Callable[..., Dataset] | Dataset | Mapping | None = None,
        test_dataset: Callable[..., Dataset] | Dataset | Mapping | None = None,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        root: str | None = None,
        image_size: int | None = None,
        name: str | None = None,
        version: str | None = None,
        mano_tip_vertex_ids: Sequence[int] | None = None,
        mesh_needs_mano: bool = False,
        detections_dir: str | None = None,
        labels: str = "3d",
    ) -> None:
        super().__init__()
        if labels not in LABELS:
            raise ValueError(f"data.labels must be one of {LABELS}, got {labels!r}")
        self.labels = labels
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.train_spec, self.val_spec, self.test_spec = train_dataset, val_dataset, test_dataset
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size) if val_batch_size else self.batch_size
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = (self.num_workers > 0) if persistent_workers is None else bool(persistent_workers)
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        self.root, self.image_size, self.name, self.version = root, image_size, name, version
        self.mano_tip_vertex_ids = None if mano_tip_vertex_ids is None else [int(i) for i in mano_tip_vertex_ids]
        self.mesh_needs_mano = bool(mesh_needs_mano)
        self.detections_dir = detections_dir
        self.train_set: Dataset | None = None
        self._resume_position: tuple[int, int] | None = None  # (epoch, batches trained) of a restored checkpoint
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # ------------------------------------------------------------ datasets
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None and self.val_set is None:
            self._setup_fit()
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = build_dataset(self.test_spec)

    def _setup_fit(self) -> None:
        train_full = build_dataset(self.train_spec)
        if self.val_fraction > 0:
            if train_full is None:
                raise ValueError("val_fraction > 0 holds validation samples out of train_dataset, which is not set")
            for attr in ("all_ids", "with_ids"):
                if not hasattr(train_full, attr):
                    raise TypeError(f"val_fraction > 0 needs a train dataset with `{attr}` ({type(train_full).__name__} has none)")
            ids = np.asarray(train_full.all_ids)
            tr, va = split_ids(len(ids), self.val_fraction, self.seed, getattr(train_full, "id_groups", None))
            self.train_set = train_full.with_ids(ids[tr])
            if self.val_spec is not None:
                val_full = build_dataset(self.val_spec)
                if not hasattr(val_full, "with_ids"):
                    raise TypeError(f"val_fraction > 0 needs a val dataset with `with_ids` ({type(val_full).__name__} has none)")
                self.val_set = val_full.with_ids(ids[va])
            else:
                self.val_set = train_full.with_ids(ids[va])
                if hasattr(self.val_set, "augment"):
                    self.val_set.augment = None
        else:
            self.train_set = train_full
            self.val_set = build_dataset(self.val_spec)
        if self.train_set is not None and len(self.train_set) < self.batch_size:
            raise ValueError(
                f"the training set has {len(self.train_set)} samples, fewer than batch_size={self.batch_size}; "
                "with drop_last no batch would be drawn (lower data.batch_size)"
            )
        log.info("data: %s", self.describe())

    # ------------------------------------------------------------ loaders
    def _distributed(self) -> bool:
        t = getattr(self, "trainer", None)
        return t is not None and int(getattr(t, "world_size", 1)) > 1

    def _loader(self, ds: Dataset, batch_size: int, train: bool) -> DataLoader:
        # one process: the resumable order (exact mid-epoch resume); DDP: plain shuffle, which
        # Lightning turns into its DistributedSampler (resume there restarts the epoch's order)
        sampler = None
        if train and not self._distributed():
            trainer = getattr(self, "trainer", None)
            sampler = ResumableRandomSampler(len(ds), self.seed, keyed=bool(getattr(ds, "accepts_keyed_index", False)),
                                             epoch_source=None if trainer is None else (lambda: trainer.current_epoch))
            if self._resume_position is not None:
                epoch, batches = self._resume_position
                if batches >= len(ds) // batch_size:  # saved at the end of an epoch: the next one starts
                    epoch, batches = epoch + 1, 0
                sampler.skip_next(epoch, batches * batch_size)
                self._resume_position = None
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=train if sampler is None else None,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        if self.train_set is None:
            raise ValueError("no train_dataset configured")
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self):
        if self.val_set is None and self.train_set is None:
            self.setup("validate")
        return [] if self.val_set is None else self._loader(self.val_set, self.val_batch_size, train=False)

    def test_dataloader(self):
        if self.test_set is None:
            self.setup("test")
        if self.test_set is None:
            raise ValueError("no test_dataset configured")
        return self._loader(self.test_set, self.val_batch_size, train=False)

    def predict_dataloader(self):
        return self.test_dataloader()

    # ------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: where in which epoch training stands (batches trained so far)."""
        t = getattr(self, "trainer", None)
        if t is None:
            return {}
        return {"epoch": int(t.current_epoch),
                "batches": int(t.fit_loop.epoch_loop.batch_progress.current.processed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A resumed run's first training pass skips the batches the saved run had trained on."""
        if state and "epoch" in state:
            self._resume_position = (int(state["epoch"]), int(state["batches"]))

    # ------------------------------------------------------------ logging
    def describe(self) -> dict[str, Any]:
        """Plain summary for logs and experiment records."""
        def info(ds):
            if ds is None:
                return None
            d = {"type": type(ds).__name__, "samples": len(ds)}
            for k in ("split", "version", "versions", "image_size", "detections_path", "skipped", "num_left"):
                if hasattr(ds, k):
                    v = getattr(ds, k)
                    d[k] = list(v) if isinstance(v, tuple) else (str(v) if k == "detections_path" else v)
            if hasattr(ds, "augment"):
                d["augment"] = ds.augment is not None
            return d

        return {
            "name": self.name, "version": self.version, "root": None if self.root is None else str(self.root), "image_size": self.image_size,
            "labels": self.labels,
            "batch_size": self.batch_size, "val_batch_size": self.val_batch_size, "num_workers": self.num_workers,
            "val_fraction": self.val_fraction, "seed": self.seed,
            "train": info(self.train_set), "val": info(self.val_set), "test": info(self.test_set),
        }  # fmt: skip


class FolderDataModule(HandDataModule):
    """``data=folder``: a :class:`HandDataModule` over :class:`handrecon.data.folder.FolderDataset`
    (conf/data/folder.yaml). ``detections``, ``K``, ``focal_ratio``, ``crop_pad`` are the folder
    options the dataset nodes interpolate (kept for :meth:`describe`); there are no 3D labels
    (``labels='2d'``)."""

    def __init__(self, detections: str | None = None, K: str | None = None, focal_ratio: float | None = None,
                 crop_pad: float | None = None, labels: str = "2d", **kwargs) -> None:
        super().__init__(labels=labels, **kwargs)
        self.folder_options = {"detections": detections, "K": K, "focal_ratio": focal_ratio, "crop_pad": crop_pad}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **{k: None if v is None else str(v) for k, v in self.folder_options.items()}}


class _TrainFields(Dataset):
    """A training set of a mix: ``verts3d`` made zeros (1, 3) (training reads no ground truth), so
    samples of sets with and without vertices collate into one batch."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        s = self.ds[i]
        s["verts3d"] = torch.zeros(1, 3)
        return s


def mix_sample_weights(sizes: list[int], shares: list[float]) -> torch.Tensor:
    """Per-sample weights over the concatenation of sets of ``sizes`` so that a draw falls in set k
    with probability shares[k] / sum(shares) (uniform within a set)."""
    if len(sizes) != len(shares):
        raise ValueError(f"{len(shares)} weights for {len(sizes)} sets")
    total = float(sum(shares))
    if any(float(w) < 0 for w in shares) or total <= 0:
        raise ValueError(f"set weights must be >= 0 with a positive sum, got {list(shares)}")
    parts = []
    for n, w in zip(sizes, shares):
        if n == 0 and w > 0:
            raise ValueError("a set with weight > 0 has no training samples")
        parts.append(torch.full((n,), float(w) / total / max(n, 1), dtype=torch.float64))
    return torch.cat(parts)


class MixDataModule(pl.LightningDataModule):
    """``data=mix``: several data sets in one run (conf/data/mix.yaml).

    sets: names of the data configs to use (keys of ``set_configs``, e.g. ['synthetic', 'folder']);
    weights: each set's share of the training draws (None: equal shares), whatever its size: batches
    are drawn with replacement by a ``WeightedRandomSampler`` over the sets' concatenation
    (``samples_per_epoch`` draws per epoch; None: the sets' total size). Every set is built by its
    own DataModule (``set_configs[name]``, a Hydra config; its image_size is this one's), so each
    keeps its own crops, intrinsics, detections and validation split. Validation: one loader per set
    with a validation set; the 3D metrics come from the sets with 3D labels, the 2D ones from all
    (``labels='2d'``: checkpoints are chosen on the 2D error against the detections, which every set
    has). No test split: evaluate on one labelled set (``data=<set>``).
    """

    def __init__(self, sets: list[str], weights: list[float] | None = None, batch_size: int = 32,
                 val_batch_size: int | None = None, num_workers: int = 2, pin_memory: bool = False,
                 persistent_workers: bool | None = None, samples_per_epoch: int | None = None, image_size: int | None = None,
                 seed: int = 0, labels: str = "2d", name: str = "mix", **set_configs) -> None:
        super().__init__()
        sets = [str(x) for x in (sets or [])]
        if not sets:
            raise ValueError("data=mix needs data.sets, e.g. data.sets='[synthetic,folder]'")
        unknown = [x for x in sets if x not in set_configs]
        if unknown:
            raise ValueError(f"data.sets names {unknown}, which data=mix does not know; known: {sorted(set_configs)}")
        if len(set(sets)) != len(sets):
            raise ValueError(f"data.sets lists a set twice: {sets}")
        shares = [1.0] * len(sets) if weights is None else [float(w) for w in weights]
        if len(shares) != len(sets):
            raise ValueError(f"data.weights has {len(shares)} values for {len(sets)} sets {sets}")
        if labels not in LABELS:
            raise ValueError(f"data.labels must be one of {LABELS}, got {labels!r}")
        self.sets, self.shares, self.labels, self.name = sets, shares, labels, name
        self.set_configs = {k: set_configs[k] for k in sets}
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size) if val_batch_size else self.batch_size
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.persistent_workers = (self.num_workers > 0) if persistent_workers is None else bool(persistent_workers)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.image_size, self.seed = image_size, int(seed)
        self.modules: dict[str, HandDataModule] | None = None
        self.train_set: Dataset | None = None
        self.val_sets: list[tuple[str, Dataset]] = []

    def _build(self) -> dict[str, HandDataModule]:
        if self.modules is None:
            from hydra.utils import instantiate

            mods = {}
            for k, c in self.set_configs.items():
                if k != "synthetic" and hasattr(c, "get") and c.get("root") in (None, "", "???"):
                    raise ValueError(f"data=mix: set {k!r} needs its folder: data.{k}.root=...")
                mods[k] = instantiate(c) if _is_config(c) else c
            self.modules = mods
        return self.modules

    def prepare_data(self) -> None:
        for dm in self._build().values():
            dm.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        mods = self._build()
        trains = []
        for k, dm in mods.items():
            dm.setup("fit")
            if dm.train_set is None:
                raise ValueError(f"data=mix: set {k!r} has no training set")
            trains.append(_TrainFields(dm.train_set))
            if dm.val_set is not None and len(dm.val_set):
                self.val_sets.append((k, dm.val_set))
        self.train_set = torch.utils.data.ConcatDataset(trains)
        self.sizes = [len(t) for t in trains]
        log.info("data: %s", self.describe())

    def sampler(self) -> torch.utils.data.WeightedRandomSampler:
        """The training draws: set k with probability weights[k] / sum(weights), uniform within it."""
        if self.train_set is None:
            self.setup("fit")
        n = self.samples_per_epoch or sum(self.sizes)
        return torch.utils.data.WeightedRandomSampler(mix_sample_weights(self.sizes, self.shares), n, replacement=True)

    def train_dataloader(self) -> DataLoader:
        sampler = self.sampler()
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.persistent_workers and self.num_workers > 0)

    def val_dataloader(self):
        if self.train_set is None:
            self.setup("fit")
        return [DataLoader(ds, batch_size=self.val_batch_size, shuffle=False, num_workers=self.num_workers,
                           pin_memory=self.pin_memory, persistent_workers=self.persistent_workers and self.num_workers > 0)
                for _, ds in self.val_sets]

    def test_dataloader(self):
        raise ValueError("data=mix has no test split: evaluate on one labelled set, e.g. task=evaluate data=freihand data.root=...")

    predict_dataloader = test_dataloader

    def describe(self) -> dict[str, Any]:
        mods = self.modules or {}
        return {
            "name": self.name, "labels": self.labels, "sets": self.sets, "weights": self.shares,
            "batch_size": self.batch_size, "samples_per_epoch": self.samples_per_epoch,
            "per_set": {k: dm.describe() for k, dm in mods.items() if hasattr(dm, "describe")},
        }


def collate(batch: list[dict]) -> dict:
    """The default collate (all sample fields are tensors, ints or strings); exposed for callers."""
    return torch.utils.data.default_collate(batch)
