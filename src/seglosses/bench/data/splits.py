"""Train/val/test splits: index ranges, seeded (group-aware) random splits, split files."""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from seglosses._options import did_you_mean


def parse_index_ranges(spec: str, n: int) -> list[int]:
    """Parse ``"0-19"``, ``"3,5,8-9"``: indices and inclusive ranges into ``range(n)``.

    Args:
        spec: comma-separated items, each an index or ``a-b`` with ``a <= b``.
        n: the number of items, for range checking.

    Returns:
        The indices in the written order.

    Raises:
        ValueError: if an item is malformed or out of range.

    Example:
        >>> parse_index_ranges("0-2, 7", 10)
        [0, 1, 2, 7]
    """
    indices: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
        if match is None:
            raise ValueError(f"`split` ranges must look like '0-19' or '3,5,8-9'; got {part!r} in {spec!r}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > high or high >= n:
            raise ValueError(f"`split` ranges must be increasing and within [0, {n - 1}]; got {part!r} for {n} items")
        indices.extend(range(low, high + 1))
    return indices


def _split_sizes(n: int, fractions: Sequence[float | int]) -> list[int]:
    values = list(fractions)
    if not values:
        raise ValueError("`fractions` must have at least one entry; got none")
    counts = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(counts) == len(values):
        if any(v < 0 for v in counts) or sum(counts) > n:
            raise ValueError(f"`fractions` as counts must be >= 0 and sum to at most n={n}; got {values}")
        return counts
    floats = [float(v) for v in values]
    if any(v < 0 for v in floats) or abs(sum(floats) - 1.0) > 1e-6:
        raise ValueError(f"`fractions` must be >= 0 and sum to 1 (or be integer counts); got {values}")
    exact = [v * n for v in floats]
    sizes = [math.floor(e) for e in exact]
    # Largest remainders get the leftover items (ties: earlier split first).
    for j in sorted(range(len(exact)), key=lambda j: (-(exact[j] - sizes[j]), j))[: n - sum(sizes)]:
        sizes[j] += 1
    return sizes


_SPLIT_SALT = 0x5EED_5B17


def split_indices(
    n: int,
    fractions: Sequence[float | int] = (0.7, 0.15, 0.15),
    *,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> list[list[int]]:
    """Split ``range(n)`` at random, reproducibly from ``seed``, optionally keeping groups whole.

    Without groups, the split sizes are exact: counts as given, or fractions of ``n`` rounded by
    largest remainder so that they sum to ``n``. With groups (patient, source image, volume),
    whole groups are assigned, largest first (ties in seeded random order), each to the split
    furthest below its target size, so no group crosses splits and the sizes are approximate.

    Args:
        n: number of items.
        fractions: fractions summing to 1, or integer counts summing to at most ``n`` (items
            beyond the total are left out).
        seed: seed of the shuffling.
        groups: one hashable group label per item, or ``None``.

    Returns:
        One sorted list of indices per entry of ``fractions``; disjoint.

    Raises:
        ValueError: if ``fractions`` is invalid or ``groups`` has the wrong length.

    Example:
        >>> [len(s) for s in split_indices(10, (0.6, 0.2, 0.2), seed=0)]
        [6, 2, 2]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be an int >= 0; got {n!r}")
    sizes = _split_sizes(n, fractions)
    # the split stream is salted so that it differs from any other stream seeded with the same
    # number (e.g. make_synthetic's choice of positive images: with one shared seed every positive
    # image would land in the training split)
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + _SPLIT_SALT) % (2**63))
    if groups is None:
        order = torch.randperm(n, generator=gen).tolist()
        splits, start = [], 0
        for size in sizes:
            splits.append(sorted(order[start:start + size]))
            start += size
        return splits
    groups = list(groups)
    if len(groups) != n:
        raise ValueError(f"`groups` must have one entry per item; got {len(groups)} for n={n}")
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    shuffled = [keys[j] for j in torch.randperm(len(keys), generator=gen).tolist()]
    shuffled.sort(key=lambda g: -len(members[g]))  # stable: ties keep the random order
    total = sum(sizes)
    filled = [0] * len(sizes)
    splits = [[] for _ in sizes]
    assigned = 0
    for g in shuffled:
        if assigned >= total:
            break  # counts summing to less than n: the rest is left out
        j = max(range(len(sizes)), key=lambda j: (sizes[j] - filled[j], -j))
        splits[j].extend(members[g])
        filled[j] += len(members[g])
        assigned += len(members[g])
    return [sorted(s) for s in splits]


def read_split_file(path: str | Path, names: Sequence[str], *, column: str = "split",
                    key: str | None = None) -> dict[str, list[int]]:
    """Read a split file listing item names per split.

    JSON: ``{"train": ["00", "01", ...], "val": [...], "test": [...]}``. CSV: a header with the
    columns ``column`` (default ``split``) and ``key`` (default ``name``, ``image`` or ``id``),
    one item per row; a data set's manifest with a suggested-split column serves as is. Entries match an item's
    name, or the stem of a file name or path (``"images/03.png"`` matches ``"03"``).

    Args:
        path: the JSON or CSV file.
        names: the data set's item names.

    Returns:
        ``{split: sorted indices}``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if the format is wrong, an entry matches no item, or an item is in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`split` file must exist; got '{path}'")
    entries: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        content = json.loads(path.read_text())
        if not isinstance(content, dict) or not all(isinstance(v, list) for v in content.values()):
            raise ValueError(f"`split` file must hold a JSON object of name lists; got {type(content).__name__} in '{path}'")
        entries = {str(k): [str(x) for x in v] for k, v in content.items()}
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            name_column = key or next((c for c in ("name", "image", "id") if c in columns), None)
            if column not in columns or name_column not in columns:
                raise ValueError(f"`split` file must have columns {column!r} and {name_column or 'name'!r}; "
                                 f"got {columns} in '{path}'")
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                entries.setdefault(row[column], []).append(row[name_column])
    else:
        raise ValueError(f"`split` file must be .json or .csv; got '{path}'")
    return _indices_by_name(entries, names, f"'{path}'")


def _indices_by_name(entries: Mapping[str, Sequence[str]], names: Sequence[str], source: str) -> dict[str, list[int]]:
    lookup = {name: i for i, name in enumerate(names)}
    result: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for split, items in entries.items():
        indices = []
        for item in items:
            index = lookup.get(item)
            if index is None:
                index = lookup.get(Path(item).stem)
            if index is None:
                raise ValueError(
                    f"`split` entries must name items of the data set; got {item!r} in split {split!r} of {source}"
                    f"{did_you_mean(item, names)}"
                )
            if index in owner and owner[index] != split:
                raise ValueError(f"`split` must not list an item twice; got {item!r} in {owner[index]!r} and {split!r}")
            owner[index] = split
            indices.append(index)
        result[split] = sorted(set(indices))
    return result
