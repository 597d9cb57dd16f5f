"""The grid of a study: the runs of one data-set entry, their labels and their ids.

A run's id is ``<data set>/<label>-s<seed>-<hash>``, the hash covering every setting that
changes the result (:func:`plan_runs`), so an unchanged study finds its run folders again.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from seglosses.bench.builders import build_run_loss, loss_has_domain
from seglosses.bench.data import BenchData
from seglosses.bench.studyfile import Study

__all__ = ["RunSpec", "plan_runs", "count_runs"]


@dataclass
class RunSpec:
    """One run of the grid.

    Attributes:
        id: unique id, also the folder path relative to ``<study>/runs``.
        dataset: the data-set entry's name.
        label: the configuration's name in the report (all seeds of a configuration share it).
        seed: the run's seed.
        order: position of the configuration in the study (report column order).
        config: the run configuration given to :func:`~seglosses.bench.train.train_run`.
        pretrain: the pre-training run this run starts from (seed 003), or ``None``.

    Example:
        >>> RunSpec("d/ce-s0-1234abcd", "d", "ce", 0, 0, {}).label
        'ce'
    """

    id: str
    dataset: str
    label: str
    seed: int
    order: int
    config: Dict[str, Any]
    pretrain: Optional["RunSpec"] = None


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")
    return s[:60] or "run"


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def plan_runs(study: Study, entry: Any, spec: Mapping[str, Any], data: BenchData,
              failures: Optional[List[Dict[str, str]]] = None) -> List[RunSpec]:
    """The runs of one data-set entry, in the study's order (losses, domains, sizes, epochs, seeds).

    A loss that takes no ``domain`` runs once whatever ``domains`` lists; configurations that
    build the same loss (e.g. a term with its own ``domain``) run once. A loss spec that does
    not build is recorded in ``failures`` and left out.

    Args:
        study: the study.
        entry: the data-set entry as written (hashed into the run ids).
        spec: its resolved spec.
        data: its data sets (for the class count).
        failures: where to record unbuildable losses.

    Returns:
        The :class:`RunSpec` list (fine-tuning runs carry their pre-training run).

    Example:
        >>> from seglosses.bench.study import build_data, parse_study, resolve_dataset
        >>> study = parse_study({"datasets": ["synthetic"], "losses": ["ce", "dice"], "domains": ["image", "batch"]})
        >>> spec = resolve_dataset("synthetic")
        >>> data = build_data({**spec, "max_images": 8, "size_override": 32})
        >>> [r.label for r in plan_runs(study, "synthetic", spec, data)]  # CE has no domain
        ['ce', 'dice (image)', 'dice (batch)']
    """
    st = study.settings
    mode = "binary" if data.num_classes == 2 else "multiclass"
    multi = {k: len(st[k]) > 1 for k in ("domains", "batch_sizes", "effective_batch_sizes", "epochs")}
    runs: List[RunSpec] = []
    seen: set = set()
    order = 0
    common = {
        "study": study.name, "dataset": data.name, "dataset_entry": entry, "optimizer": st["optimizer"],
        "schedule": st["schedule"], "model": st["model"], "sampler": st["sampler"],
        "steps_per_epoch": st["steps_per_epoch"], "eval": st["eval"], "amp": st["amp"],
    }
    for loss in st["losses"]:
        try:
            has_domain = loss_has_domain(loss["loss"], mode)
            domains = st["domains"] if has_domain else [None]
            specs = {d: build_run_loss(loss["loss"], mode, d).spec() for d in domains}
        except (ValueError, TypeError) as err:
            if failures is not None:
                failures.append({"run": f"{loss['label']} [{data.name}]", "error": f"loss {loss['label']!r}: {err}"})
            continue
        for domain in domains:
            for bs in st["batch_sizes"]:
                for ebs in st["effective_batch_sizes"]:
                    for epochs in st["epochs"]:
                        key = (specs[domain], bs, ebs or bs, epochs)
                        if key in seen:
                            continue
                        seen.add(key)
                        label = loss["label"]
                        if domain is not None and multi["domains"]:
                            label += f" ({domain})"
                        if multi["batch_sizes"]:
                            label += f" bs{bs}"
                        if multi["effective_batch_sizes"]:
                            label += f" ebs{ebs or bs}"
                        if multi["epochs"]:
                            label += f" {epochs}ep"
                        for seed in st["seeds"]:
                            config = {**common, "loss": loss["loss"], "loss_spec": specs[domain],
                                      "loss_label": loss["label"], "domain": domain, "batch_size": bs,
                                      "effective_batch_size": ebs or bs, "epochs": epochs, "seed": seed}
                            pre = _pretrain_run(study, config, data) if st["pretrain"] else None
                            if pre is not None:
                                config["pretrain"] = {"loss": pre.config["loss_spec"], "epochs": pre.config["epochs"],
                                                      "run": pre.id}
                            digest = _hash({k: v for k, v in config.items() if k not in ("study",)})
                            run_id = f"{_slug(data.name)}/{_slug(label)}-s{seed}-{digest}"
                            config.update(label=label, order=order, run_id=run_id, kind="run")
                            runs.append(RunSpec(run_id, data.name, label, seed, order, config, pre))
                        order += 1
    return runs


def _pretrain_run(study: Study, config: Mapping[str, Any], data: BenchData) -> RunSpec:
    pre = study.settings["pretrain"]
    mode = "binary" if data.num_classes == 2 else "multiclass"
    spec = build_run_loss(pre["loss"], mode, None).spec()
    cfg = {k: v for k, v in config.items() if k not in ("loss", "loss_spec", "loss_label", "domain", "epochs")}
    cfg.update(loss=pre["loss"], loss_spec=spec, loss_label=pre.get("label") or str(pre["loss"]), domain=None,
               epochs=pre["epochs"], eval={"metrics": ["dice", "jaccard"], "batch_size": config["eval"].get("batch_size"),
                                           "samples": 0})
    digest = _hash({k: v for k, v in cfg.items() if k not in ("study",)})
    label = f"pretrain {cfg['loss_label']}"
    run_id = f"{_slug(data.name)}/_pretrain/{_slug(cfg['loss_label'])}-bs{cfg['batch_size']}-s{cfg['seed']}-{digest}"
    cfg.update(label=label, order=-1, run_id=run_id, kind="pretrain")
    return RunSpec(run_id, data.name, label, int(cfg["seed"]), -1, cfg, None)


def count_runs(study: Study, mode: str = "binary") -> int:
    """The runs one data-set entry of the study plans (an upper bound when configurations coincide):
    losses × domains (for losses with a domain) × batch sizes × effective batch sizes × epochs × seeds.

    Example:
        >>> from seglosses.bench.studyfile import parse_study
        >>> count_runs(parse_study({"datasets": ["x"], "losses": ["ce", "dice"], "domains": ["image", "batch"],
        ...                         "seeds": [0, 1]}))
        6
    """
    st = study.settings
    per_loss = 0
    for loss in st["losses"]:
        try:
            per_loss += len(st["domains"]) if loss_has_domain(loss["loss"], mode) else 1
        except (ValueError, TypeError):
            continue
    return per_loss * len(st["batch_sizes"]) * len(st["effective_batch_sizes"]) * len(st["epochs"]) * len(st["seeds"])
