"""Tests of the benchmark's data side (seglosses.bench.data)."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from seglosses.bench.data import (
    QuadrantDataset,
    RatioBatchSampler,
    RotatedCropDataset,
    SegmentationDataset,
    SubsetDataset,
    TiledDataset,
    build_dataset,
    foreground_flags,
    load_folder,
    load_nifti_slices,
    parse_index_ranges,
    positives_only,
    quadrants,
    random_crop_params,
    random_rotated_crop,
    read_image,
    read_split_file,
    rotated_crop,
    split_indices,
    tile,
    tile_origins,
    tissue_filter,
)

REPO = Path(__file__).resolve().parents[2]


def _isbi_dir() -> Path:
    shared = os.environ.get("SEGLOSSES_SHARED")
    base = Path(shared) if shared else REPO.parent / "shared"
    path = base / "datasets" / "isbi2012-em"
    if not (path / "images").is_dir():
        pytest.skip(f"ISBI 2012 data not found at {path}")
    return path


def _labels(h=40, w=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g)
    mask = torch.tensor([0, 3, 7])[torch.randint(0, 3, (h, w), generator=g)]
    return image, mask


# --------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    "height, width, size, stride, rows, cols",
    [
        (1024, 1300, 512, 256, [0, 256, 512], [0, 256, 512, 768, 788]),  # seed 000 tiling
        (512, 512, 512, 256, [0], [0]),
        (600, 700, 256, 256, [0, 256, 344], [0, 256, 444]),
        (9, 10, 3, 1, list(range(7)), list(range(8))),
    ],
)
def test_tile_origins_count_coverage_and_border_alignment(height, width, size, stride, rows, cols):
    origins = tile_origins(height, width, size, stride)
    assert origins == [(y, x) for y in rows for x in cols]
    covered = torch.zeros(height, width, dtype=torch.int64)
    for y, x in origins:
        assert 0 <= y and y + size <= height and 0 <= x and x + size <= width
        covered[y:y + size, x:x + size] += 1
    assert covered.min() >= 1  # every pixel is in some tile
    assert max(y for y, _ in origins) + size == height  # last row of tiles at the bottom border
    assert max(x for _, x in origins) + size == width


def test_tile_stacks_the_windows_of_image_and_mask():
    image, mask = _labels(37, 45)
    tiles = tile(image, mask, tile=16, stride=8)
    assert tiles.images.shape == (len(tiles.origins), 3, 16, 16)
    assert tiles.masks.shape == (len(tiles.origins), 16, 16)
    assert len(tiles.origins) == 4 * 5
    for k, (y, x) in enumerate(tiles.origins):
        assert torch.equal(tiles.images[k], image[:, y:y + 16, x:x + 16])
        assert torch.equal(tiles.masks[k], mask[y:y + 16, x:x + 16])
    assert tile(image, None, tile=16, stride=8).masks is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tile=64, stride=32), r"`tile` must be an int in \[1, min\(height, width\)\]; got 64 for a 37x45 image"),
        (dict(tile=16, stride=17), r"`stride` must be an int in \[1, tile=16\]; got 17"),
        (dict(tile=16, stride=0), r"`stride` must be an int in \[1, tile=16\]; got 0"),
    ],
)
def test_tile_rejects_bad_sizes(kwargs, match):
    image, mask = _labels(37, 45)
    with pytest.raises(ValueError, match=match):
        tile(image, mask, **kwargs)


def test_tile_rejects_mismatched_mask():
    with pytest.raises(ValueError, match=r"`mask` must have shape \[8, 8\] \(the image's \[H, W\]\); got \[8, 9\]"):
        tile(torch.zeros(1, 8, 8), torch.zeros(8, 9, dtype=torch.long), tile=4, stride=4)


# --------------------------------------------------------------------------------- tissue filter


def test_tissue_filter_thresholds():
    white = torch.ones(3, 20, 20)
    assert tissue_filter(white) is False
    assert tissue_filter(torch.full((3, 20, 20), 0.5)) is True
    tissue = white.clone()
    tissue[:, :1, :] = 0.3  # 20 of 400 pixels = 5 %: kept at the default minimum fraction
    assert tissue_filter(tissue) is True
    assert tissue_filter(tissue, min_tissue_fraction=0.06) is False
    tissue[:, :1, :1] = 0.95  # 19 / 400 < 5 %
    assert tissue_filter(tissue) is False
    # Intensity is the channel mean: a saturated pink pixel (1, 0.4, 0.8) is tissue.
    pink = torch.tensor([1.0, 0.4, 0.8]).view(3, 1, 1).expand(3, 20, 20)
    assert tissue_filter(pink) is True
    assert tissue_filter(pink, white_threshold=0.7) is False


def test_tissue_filter_batches_and_uint8():
    batch = torch.stack([torch.ones(1, 8, 8), torch.zeros(1, 8, 8)])
    assert tissue_filter(batch).tolist() == [False, True]
    assert tissue_filter(torch.full((1, 8, 8), 255, dtype=torch.uint8)) is False
    with pytest.raises(ValueError, match=r"`image` must have shape \[C, H, W\] or \[N, C, H, W\]; got \[8, 8\]"):
        tissue_filter(torch.ones(8, 8))


def test_tiled_dataset_drops_white_tiles_and_keeps_groups():
    image = torch.ones(3, 64, 96)
    image[:, :32, :32] = 0.4  # tissue only in the top-left tile
    mask = torch.zeros(64, 96, dtype=torch.long)
    mask[5:9, 5:9] = 1
    base = SegmentationDataset([image], [mask], names=["slide"], groups=["patient7"])
    all_tiles = TiledDataset(base, 32, 32)
    assert len(all_tiles) == 6
    kept = TiledDataset(base, 32, 32, tissue=True)
    assert len(kept) == 1 and kept.names == ["slide@0,0"] and kept.groups == ["patient7"]
    assert foreground_flags(kept) == [True]
    img, msk = kept[0]
    assert img.shape == (3, 32, 32) and torch.equal(msk, mask[:32, :32])
    assert len(TiledDataset(base, 32, 32, tissue={"min_tissue_fraction": 0.0})) == 6
    with pytest.raises(ValueError, match=r"`tile` must be an int .*got 128 for a 64x96 image \(item 0, 'slide'; set "):
        TiledDataset(base, 128, small="error")
    assert TiledDataset(base, 128).padded == 1  # by default a small image is padded, not an error


def test_tiled_dataset_of_uint8_subset_equals_slices_of_full_items():
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (2, 20, 30), dtype=torch.uint8, generator=g) for _ in range(3)]
    masks = [torch.randint(0, 3, (20, 30), dtype=torch.uint8, generator=g) for _ in range(3)]
    base = SegmentationDataset(images, masks)
    subset = SubsetDataset(base, [2, 0])
    tiles = TiledDataset(subset, 16, 8)
    assert len(tiles) == 2 * 2 * 3 and tiles.names[:3] == ["2@0,0", "2@0,8", "2@0,14"]
    for k, (i, y, x) in enumerate(tiles.entries):
        image, mask = subset[i]
        tile_image, tile_mask = tiles[k]
        assert tile_image.dtype == torch.float32 and tile_mask.dtype == torch.int64
        assert torch.equal(tile_image, image[:, y:y + 16, x:x + 16])
        assert torch.equal(tile_mask, mask[y:y + 16, x:x + 16])


# --------------------------------------------------------------------------------- rotated crops


def test_rotated_crop_at_angle_zero_is_a_plain_crop():
    image, mask = _labels()
    img, msk = rotated_crop(image, mask, center=(5 + 8, 11 + 8), angle=0.0, size=16)
    assert torch.allclose(img, image[:, 5:21, 11:27], atol=1e-5)
    assert torch.equal(msk, mask[5:21, 11:27])


def test_rotated_crop_at_90_degrees_is_a_rotated_plain_crop():
    image, mask = _labels()
    img, msk = rotated_crop(image, mask, center=(10 + 7, 20 + 7), angle=90.0, size=14)
    assert torch.allclose(img, torch.rot90(image[:, 10:24, 20:34], 1, dims=(-2, -1)), atol=1e-5)
    assert torch.equal(msk, torch.rot90(mask[10:24, 20:34], 1, dims=(-2, -1)))


def test_random_rotated_crop_shape_labels_and_determinism():
    image, mask = _labels(60, 70)
    labels = set(mask.unique().tolist())
    crops = []
    for seed in range(12):
        img, msk = random_rotated_crop(image, mask, 32, torch.Generator().manual_seed(seed))
        assert img.shape == (3, 32, 32) and img.dtype == torch.float32
        assert msk.shape == (32, 32) and msk.dtype == mask.dtype
        assert set(msk.unique().tolist()) <= labels  # nearest sampling: no new labels
        assert img.min() >= 0 and img.max() <= 1
        crops.append((img, msk))
    again = random_rotated_crop(image, mask, 32, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], crops[3][0]) and torch.equal(again[1], crops[3][1])
    assert not torch.equal(crops[0][1], crops[1][1])


def test_random_crop_params_keep_the_rotated_square_inside():
    for (h, w, size) in [(60, 70, 32), (40, 45, 32), (32, 50, 32)]:
        g = torch.Generator().manual_seed(0)
        for _ in range(200):
            (cy, cx), angle = random_crop_params(h, w, size, g)
            a = math.radians(angle)
            for sy, sx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
                dx, dy = sx * size / 2, sy * size / 2
                x = cx + math.cos(a) * dx - math.sin(a) * dy
                y = cy + math.sin(a) * dx + math.cos(a) * dy
                assert -1e-6 <= x <= w + 1e-6 and -1e-6 <= y <= h + 1e-6, (h, w, angle)
    # An image smaller than size * sqrt(2) allows only angles near multiples of 90 degrees.
    g = torch.Generator().manual_seed(1)
    angles = [random_crop_params(40, 40, 32, g)[1] for _ in range(300)]
    off = [min(abs(a - k * 90) for k in range(-2, 3)) for a in angles]
    assert max(off) <= math.degrees(math.asin(40 / 32 / math.sqrt(2)) - math.pi / 4) + 1e-9
    assert min(angles) < -90 and max(angles) > 90


def test_random_crop_with_max_angle_zero_is_an_integer_plain_crop():
    image, mask = _labels(60, 70)
    g = torch.Generator().manual_seed(5)
    (cy, cx), angle = random_crop_params(60, 70, 24, g, max_angle=0.0)
    assert angle == 0.0 and (cy - 12).is_integer() and (cx - 12).is_integer()
    img, msk = random_rotated_crop(image, mask, 24, torch.Generator().manual_seed(5), max_angle=0.0)
    y, x = int(cy - 12), int(cx - 12)
    assert torch.allclose(img, image[:, y:y + 24, x:x + 24], atol=1e-5)
    assert torch.equal(msk, mask[y:y + 24, x:x + 24])


def test_random_rotated_crop_rejects_too_large_size():
    image, mask = _labels(30, 40)
    with pytest.raises(ValueError, match=r"`size` must be an int in \[1, min\(height, width\)\]; got 31 for a 30x40 image"):
        random_rotated_crop(image, mask, 31)


def test_rotated_crop_dataset_depends_on_seed_epoch_index_only():
    base = SegmentationDataset(*zip(*[_labels(48, 48, seed=s) for s in range(3)]))
    ds = RotatedCropDataset(base, 24, seed=1)
    first = [ds[i] for i in range(3)]
    assert torch.equal(ds[2][0], first[2][0])  # access order does not matter
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], first[0][0])
    ds.set_epoch(0)
    assert torch.equal(ds[0][1], first[0][1])
    assert len(ds) == 3 and foreground_flags(ds) == foreground_flags(base)


# --------------------------------------------------------------------------------- quadrants


@pytest.mark.parametrize("h, w", [(8, 8), (7, 9)])
def test_quadrants_partition_the_image(h, w):
    image, mask = _labels(h, w)
    parts = quadrants(image, mask)
    assert len(parts) == 4
    top = torch.cat([parts[0][0], parts[1][0]], dim=-1)
    bottom = torch.cat([parts[2][0], parts[3][0]], dim=-1)
    assert torch.equal(torch.cat([top, bottom], dim=-2), image)
    top = torch.cat([parts[0][1], parts[1][1]], dim=-1)
    bottom = torch.cat([parts[2][1], parts[3][1]], dim=-1)
    assert torch.equal(torch.cat([top, bottom], dim=-2), mask)
    assert parts[0][0].shape[-2:] == (h // 2, w // 2)


def test_quadrant_dataset_names_and_flags():
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[6, 1] = 1  # bottom-left only
    base = SegmentationDataset([torch.zeros(1, 8, 8)], [mask], names=["a"])
    ds = QuadrantDataset(base)
    assert len(ds) == 4 and ds.names == ["a#q0", "a#q1", "a#q2", "a#q3"]
    assert foreground_flags(ds) == [False, False, True, False]
    assert ds[2][0].shape == (1, 4, 4)


# --------------------------------------------------------------------------------- sampling


def test_ratio_sampler_every_batch_has_the_intended_positive_count():
    flags = [i % 8 == 0 for i in range(80)]  # 10 positives : 70 negatives (seed 000: about 1:7)
    sampler = RatioBatchSampler(flags, 16, seed=0)
    assert sampler.num_positive == 2 and len(sampler) == 5
    seen = []
    for batch in sampler:
        assert len(batch) == 16
        assert all(0 <= i < 80 for i in batch)
        assert sum(flags[i] for i in batch) == 2
        seen += batch
    assert sorted(seen) == list(range(80))  # with the data set's own ratio, one pass over each kind
    for ratio, k in ((0.5, 8), (0.01, 1), (0.99, 15)):
        batches = list(RatioBatchSampler(flags, 16, ratio, seed=3))
        assert all(sum(flags[i] for i in b) == k for b in batches)


def test_ratio_sampler_is_deterministic_and_changes_with_epoch():
    flags = [i % 5 == 0 for i in range(50)]
    a = list(RatioBatchSampler(flags, 8, seed=4))
    b = list(RatioBatchSampler(flags, 8, seed=4))
    assert a == b
    sampler = RatioBatchSampler(flags, 8, seed=4)
    sampler.set_epoch(1)
    assert list(sampler) != a
    assert list(RatioBatchSampler(flags, 8, seed=5)) != a


def test_ratio_sampler_cycles_the_minority_and_respects_drop_last():
    flags = [True] + [False] * 99
    sampler = RatioBatchSampler(flags, 8, seed=0)
    assert sampler.num_positive == 1  # round(8 * 0.01) = 0, raised to 1
    batches = list(sampler)
    assert len(batches) == 13 and all(b.count(0) == 1 for b in batches)
    assert len(RatioBatchSampler(flags, 8, drop_last=True)) == 12
    assert len(list(RatioBatchSampler(flags, 8, num_batches=3))) == 3
    # Fewer positives than k: repeats within a batch.
    batches = list(RatioBatchSampler([True, True] + [False] * 6, 4, 0.75))
    assert all(sum(i < 2 for i in b) == 3 for b in batches)


def test_ratio_sampler_shares_global_steps_between_replicas():
    flags = [i % 4 == 0 for i in range(64)]
    per_rank = [list(RatioBatchSampler(flags, 4, seed=2, num_replicas=2, rank=r)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 8
    single = list(RatioBatchSampler(flags, 4, seed=2, num_batches=16))
    assert [b for pair in zip(*per_rank) for b in pair] == single  # the same streams, interleaved
    assert all(sum(flags[i] for i in b) == 1 for b in per_rank[0] + per_rank[1])
    assert sorted(i for b in per_rank[0] + per_rank[1] for i in b) == list(range(64))
    with pytest.raises(ValueError, match=r"`rank` must be an int in \[0, num_replicas=2\); got 2"):
        RatioBatchSampler(flags, 4, num_replicas=2, rank=2)


def test_ratio_sampler_works_as_a_dataloader_batch_sampler():
    images, masks = torch.rand(12, 1, 4, 4), torch.zeros(12, 4, 4, dtype=torch.long)
    masks[:3, 0, 0] = 1
    ds = SegmentationDataset(images, masks)
    loader = DataLoader(ds, batch_sampler=RatioBatchSampler(foreground_flags(ds), 4, seed=0))
    for x, y in loader:
        assert x.shape == (4, 1, 4, 4)
        assert int((y.flatten(1).amax(1) > 0).sum()) == 1


@pytest.mark.parametrize(
    "flags, kwargs, match",
    [
        ([False] * 4, dict(ratio=0.5), r"`ratio` must be 0 when no item is positive; got 0.5"),
        ([True] * 4, dict(ratio=0.5), r"`ratio` must be 1 \(or None\) when every item is positive; got 0.5"),
        ([], {}, r"`has_positive` must have at least one entry"),
        ([True, False], dict(ratio=2.0), r"`ratio` must be in \[0, 1\]; got 2.0"),
        ([True, False], dict(batch_size=0), r"`batch_size` must be an int >= 1; got 0"),
    ],
)
def test_ratio_sampler_errors(flags, kwargs, match):
    args = {"batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        RatioBatchSampler(flags, **args)


def test_positives_only_keeps_items_with_foreground():
    masks = torch.zeros(5, 4, 4, dtype=torch.long)
    masks[[1, 3], 2, 2] = 2
    ds = SegmentationDataset(torch.rand(5, 1, 4, 4), masks, names=list("abcde"))
    pos = positives_only(ds)
    assert len(pos) == 2 and pos.names == ["b", "d"]
    assert torch.equal(pos[1][1], masks[3])
    assert foreground_flags(pos) == [True, True]
    with pytest.raises(ValueError, match=r"`dataset` must have at least one item with foreground; got none among 5"):
        positives_only(SegmentationDataset(torch.rand(5, 1, 4, 4), torch.zeros(5, 4, 4, dtype=torch.long)))


# --------------------------------------------------------------------------------- splits


def test_split_indices_disjoint_cover_deterministic():
    parts = split_indices(101, (0.7, 0.15, 0.15), seed=0)
    assert [len(p) for p in parts] == [71, 15, 15]
    assert sorted(sum(parts, [])) == list(range(101))
    assert parts == split_indices(101, (0.7, 0.15, 0.15), seed=0)
    assert parts != split_indices(101, (0.7, 0.15, 0.15), seed=1)
    counts = split_indices(30, (20, 5, 3), seed=2)
    assert [len(p) for p in counts] == [20, 5, 3]
    assert len(set(sum(counts, []))) == 28


def test_split_indices_keeps_groups_whole():
    groups = [f"patient{i // 4}" for i in range(60)] + [f"big{i // 10}" for i in range(20)]
    parts = split_indices(80, (0.7, 0.15, 0.15), seed=0, groups=groups)
    assert sorted(sum(parts, [])) == list(range(80))
    owner = {}
    for j, part in enumerate(parts):
        for i in part:
            assert owner.setdefault(groups[i], j) == j  # no group crosses splits
    assert abs(len(parts[0]) - 56) <= 4 and all(len(p) > 0 for p in parts)
    assert parts == split_indices(80, (0.7, 0.15, 0.15), seed=0, groups=groups)


@pytest.mark.parametrize(
    "fractions, match",
    [
        ((0.5, 0.2), r"`fractions` must be >= 0 and sum to 1 \(or be integer counts\); got \[0.5, 0.2\]"),
        ((8, 5), r"`fractions` as counts must be >= 0 and sum to at most n=10; got \[8, 5\]"),
    ],
)
def test_split_indices_errors(fractions, match):
    with pytest.raises(ValueError, match=match):
        split_indices(10, fractions)


def test_parse_index_ranges():
    assert parse_index_ranges("0-19", 30) == list(range(20))
    assert parse_index_ranges("3, 5,8-9", 10) == [3, 5, 8, 9]
    with pytest.raises(ValueError, match=r"`split` ranges must be increasing and within \[0, 29\]; got '25-30' for 30 items"):
        parse_index_ranges("25-30", 30)
    with pytest.raises(ValueError, match=r"`split` ranges must look like '0-19' or '3,5,8-9'; got 'a-b'"):
        parse_index_ranges("a-b", 30)


def test_read_split_file_json_and_csv(tmp_path):
    names = ["00", "01", "02", "03"]
    (tmp_path / "s.json").write_text(json.dumps({"train": ["00", "images/01.png"], "test": ["03"]}))
    assert read_split_file(tmp_path / "s.json", names) == {"train": [0, 1], "test": [3]}
    (tmp_path / "s.csv").write_text("name,split\n02,val\n00,train\n")
    assert read_split_file(tmp_path / "s.csv", names) == {"val": [2], "train": [0]}
    (tmp_path / "bad.json").write_text(json.dumps({"train": ["07"]}))
    with pytest.raises(ValueError, match=r"`split` entries must name items of the data set; got '07' in split 'train'"):
        read_split_file(tmp_path / "bad.json", names)
    (tmp_path / "twice.json").write_text(json.dumps({"train": ["00"], "val": ["00"]}))
    with pytest.raises(ValueError, match=r"`split` must not list an item twice; got '00' in 'train' and 'val'"):
        read_split_file(tmp_path / "twice.json", names)


# --------------------------------------------------------------------------------- folder loading


def _write_pair(images, masks, stem, image, mask, *, mask_stem=None):
    images.mkdir(exist_ok=True)
    masks.mkdir(exist_ok=True)
    Image.fromarray(image).save(images / f"{stem}.png")
    Image.fromarray(mask).save(masks / f"{mask_stem or stem}.png")


def _make_folder(tmp_path, n=3, size=(12, 10), values=(0, 255)):
    images, masks = tmp_path / "images", tmp_path / "masks"
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 256, size, dtype=np.uint8)
        mask = np.full(size, values[0], dtype=np.uint8)
        mask[: 2 + i, :3] = values[1]
        _write_pair(images, masks, f"img{i}", image, mask)
    return images, masks


def test_load_folder_binary_0_255_masks_become_0_1(tmp_path):
    images, masks = _make_folder(tmp_path)
    ds = load_folder(images, masks)
    assert len(ds) == 3 and ds.names == ["img0", "img1", "img2"]
    image, mask = ds[1]
    assert image.shape == (1, 12, 10) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert mask.dtype == torch.int64 and set(mask.unique().tolist()) == {0, 1}
    assert int(mask.sum()) == 3 * 3
    raw = np.array(Image.open(images / "img1.png"))
    assert torch.allclose(image[0], torch.from_numpy(raw).float() / 255)


def test_load_folder_classes_mapping_inverts_isbi_style(tmp_path):
    images, masks = _make_folder(tmp_path)
    ds = load_folder(images, masks, classes={0: 1, 255: 0})
    assert int(ds[0][1].sum()) == 12 * 10 - 2 * 3
    ds = load_folder(images, masks, classes={"0": 1, "255": 0})  # JSON-style string keys
    assert int(ds[0][1].sum()) == 12 * 10 - 2 * 3


def test_load_folder_multiclass_index_masks_rgb_and_16_bit(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    rgb = np.zeros((6, 7, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    mask = np.zeros((6, 7), dtype=np.uint8)
    mask[0, 0], mask[1, 1] = 1, 2
    _write_pair(images, masks, "a", rgb, mask)
    ds = load_folder(images, masks)
    image, labels = ds[0]
    assert image.shape == (3, 6, 7) and torch.allclose(image[1], torch.full((6, 7), 200 / 255))
    assert sorted(labels.unique().tolist()) == [0, 1, 2]

    deep = tmp_path / "deep"
    deep.mkdir()
    Image.fromarray(np.full((6, 7), 65535 // 2, dtype=np.uint16)).save(deep / "a.png")
    image = read_image(deep / "a.png")
    assert image.dtype == torch.float32 and image.shape == (1, 6, 7)
    assert torch.allclose(image, torch.full((1, 6, 7), (65535 // 2) / 65535))


def test_load_folder_palette_mask_and_mask_suffix_and_group_pattern(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in ("p1_a", "p1_b", "p2_a"):
        mask = Image.fromarray(np.array([[0, 1], [2, 0]], dtype=np.uint8), mode="P")
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
        images.mkdir(exist_ok=True)
        masks.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(images / f"{stem}.png")
        mask.save(masks / f"{stem}_mask.png")
    ds = load_folder(images, masks, mask_suffix="_mask", group_pattern=r"^(p\d+)_")
    assert ds.groups == ["p1", "p1", "p2"]
    assert ds[0][1].tolist() == [[0, 1], [2, 0]]


def test_load_folder_manifest_with_groups(tmp_path):
    images, masks = _make_folder(tmp_path)
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("image,mask,group\nimg2.png,img2.png,g1\nimg0.png,img0.png,g1\n")
    ds = load_folder(images, masks, manifest=manifest)
    assert ds.names == ["img2", "img0"] and ds.groups == ["g1", "g1"]
    (tmp_path / "nocol.csv").write_text("picture,mask\nimg0.png,img0.png\n")
    with pytest.raises(ValueError, match=r"`manifest` must have columns 'image' and 'mask'; got columns \['picture', 'mask'\]"):
        load_folder(images, masks, manifest=tmp_path / "nocol.csv")
    (tmp_path / "missing.csv").write_text("image,mask\nimg0.png,img9.png\n")
    with pytest.raises(FileNotFoundError, match=r"`manifest` must list existing files; got missing mask '.*img9.png' on line 2"):
        load_folder(images, masks, manifest=tmp_path / "missing.csv")


def test_load_folder_missing_folder(tmp_path):
    images, masks = _make_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`images_dir` must be an existing directory; got '.*nowhere'"):
        load_folder(tmp_path / "nowhere", masks)
    with pytest.raises(FileNotFoundError, match=r"`masks_dir` must be an existing directory; got '.*nowhere'"):
        load_folder(images, tmp_path / "nowhere")


def test_load_folder_image_without_mask(tmp_path):
    images, masks = _make_folder(tmp_path)
    (masks / "img1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"`masks_dir` must hold a mask for every image; got no mask with stem 'img1' for image '.*img1.png'"):
        load_folder(images, masks)


def test_load_folder_mask_without_image(tmp_path):
    images, masks = _make_folder(tmp_path)
    (images / "img2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"`images_dir` must hold an image for every mask; got no image with stem 'img2' for mask '.*img2.png'"):
        load_folder(images, masks)


def test_load_folder_size_mismatch(tmp_path):
    images, masks = _make_folder(tmp_path)
    Image.fromarray(np.zeros((12, 11), dtype=np.uint8)).save(masks / "img1.png")
    with pytest.raises(ValueError, match=r"`masks` must match their images in size; got mask \[12, 11\] in '.*img1.png' for image \[12, 10\] in '.*img1.png'"):
        load_folder(images, masks)


def test_load_folder_mask_value_outside_classes(tmp_path):
    images, masks = _make_folder(tmp_path)
    with pytest.raises(ValueError, match=r"`classes` must map every mask value; got values \[255\] in '.*img0.png' outside its keys \[0, 1\]"):
        load_folder(images, masks, classes={0: 0, 1: 1})


def test_load_folder_values_need_a_mapping(tmp_path):
    images, masks = _make_folder(tmp_path)
    Image.fromarray(np.full((12, 10), 128, dtype=np.uint8)).save(masks / "img1.png")
    with pytest.raises(ValueError, match=r"`classes` must be given when the masks do not hold class indices .*got values \[0, 128, 255\]"):
        load_folder(images, masks)


def test_load_folder_channel_mismatch_and_empty_folder(tmp_path):
    images, masks = _make_folder(tmp_path)
    Image.fromarray(np.zeros((12, 10, 3), dtype=np.uint8)).save(images / "img2.png")
    with pytest.raises(ValueError, match=r"`images` must all have the same channel count; got 3 in '.*img2.png' and 1"):
        load_folder(images, masks)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"`images_dir` must contain image files matching '\*'"):
        load_folder(empty, masks)


def test_read_multi_page_tiff_as_channels(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    stack = np.stack([np.full((5, 6), v, dtype=np.uint16) for v in (0, 1000, 65535)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    image = read_image(tmp_path / "stack.tif")
    assert image.shape == (3, 5, 6)
    assert torch.allclose(image[:, 0, 0], torch.tensor([0.0, 1000 / 65535, 1.0]))


# --------------------------------------------------------------------------------- NIfTI


def test_nifti_without_nibabel_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nibabel(name, *args, **kwargs):
        if name == "nibabel":
            raise ImportError("No module named 'nibabel'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nibabel)
    with pytest.raises(ImportError, match=r"nibabel.*`seglosses\[nifti\]` extra"):
        load_nifti_slices(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")


def test_nifti_slices_roundtrip(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = np.random.default_rng(0).random((6, 7, 4)).astype(np.float32)
    labels = np.zeros((6, 7, 4), dtype=np.uint8)
    labels[2:4, 3:5, 1] = 1
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    nibabel.save(nibabel.Nifti1Image(labels, np.eye(4)), tmp_path / "m.nii.gz")
    ds = load_nifti_slices(tmp_path / "v.nii.gz", tmp_path / "m.nii.gz", axis=2)
    assert len(ds) == 4 and ds.groups == ["v"] * 4 and ds.names[1] == "v[1]"
    assert ds[1][0].shape == (1, 6, 7) and foreground_flags(ds) == [False, True, False, False]


# --------------------------------------------------------------------------------- build_dataset


def test_build_dataset_synthetic_with_crops_and_quadrants():
    spec = {"type": "synthetic", "n_images": 20, "size": 64, "positive_fraction": 0.5, "seed": 1,
            "crop": 32, "quadrants": True}
    data = build_dataset(spec)
    assert (len(data.train), len(data.val), len(data.test)) == (14, 12, 12)  # val/test: 3 items x 4 quadrants
    assert data.num_classes == 2 and data.in_channels == 1 and data.name == "synthetic"
    x, y = data.train[0]
    assert x.shape == (1, 32, 32) and y.shape == (32, 32)
    x, y = data.val[0]
    assert x.shape == (1, 32, 32)
    multi = build_dataset({"type": "synthetic", "mode": "multiclass", "n_images": 8, "size": 32,
                           "split": {"counts": [4, 4]}})
    assert multi.num_classes == 3 and multi.test is None and len(multi.val) == 4
    whole = build_dataset({"type": "synthetic", "n_images": 6, "size": 32, "split": {"fractions": [1, 0]}})
    assert len(whole.train) == 6 and len(whole.val) == 0


def test_build_dataset_folder_with_tiles_tissue_and_positives(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(4):
        image = np.full((32, 48), 250, dtype=np.uint8)
        image[:16, :16] = 60  # tissue in the top-left tile only
        mask = np.zeros((32, 48), dtype=np.uint8)
        if i % 2 == 0:
            mask[2:6, 2:6] = 255
        _write_pair(images, masks, f"s{i}", image, mask)
    spec = {"name": "tiles", "type": "folder", "images": "images", "masks": "masks",
            "split": {"train": ["s0", "s1"], "val": "2", "test": [3]},
            "tile": 16, "stride": 16, "tissue_filter": True}
    data = build_dataset(spec, root=tmp_path)
    assert len(data.train) == 2 and data.train.names == ["s0@0,0", "s1@0,0"]
    assert foreground_flags(data.train) == [True, False]
    data = build_dataset({**spec, "positives_only": True, "split": {"train": "0-3"}}, root=tmp_path)
    assert data.train.names == ["s0@0,0", "s2@0,0"] and data.val is None
    (tmp_path / "split.json").write_text(json.dumps({"train": ["s1"], "test": ["s0"]}))
    data = build_dataset({**spec, "split": {"file": "split.json"}}, root=tmp_path)
    assert data.train.names == ["s1@0,0"] and data.test.names == ["s0@0,0"]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"type": "synthetc"}, r"`type` must be one of 'folder', 'synthetic', 'nifti'; got 'synthetc' \(did you mean 'synthetic'\?\)"),
        ({"type": "synthetic", "n_image": 4}, r"`spec` keys must be among .*; got 'n_image' \(did you mean 'n_images'\?\)"),
        ({"type": "synthetic", "n_images": 8, "size": 32, "split": {"train": "0-3", "val": "3-5"}},
         r"`split` must not list an item twice; got item 3 in 'train' and 'val'"),
        ({"type": "synthetic", "n_images": 8, "size": 32, "split": {"training": "0-3"}},
         r"`split` keys must be .*got 'training' \(did you mean 'train'\?\)"),
        ({"type": "synthetic", "n_images": 8, "size": 32, "tissue_filter": True},
         r"`tissue_filter` must be used with `tile`"),
    ],
)
def test_build_dataset_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        build_dataset(spec)


# --------------------------------------------------------------------------------- ISBI 2012


def test_isbi_folder_loads_as_documented():
    root = _isbi_dir()
    ds = load_folder(root / "images", root / "masks", classes={0: 1, 255: 0})
    assert len(ds) == 30 and ds.names[0] == "00" and ds.names[-1] == "29"
    image, mask = ds[0]
    assert image.shape == (1, 512, 512) and image.dtype == torch.float32 and mask.dtype == torch.int64
    masks = torch.stack(ds.masks)
    assert masks.shape == (30, 512, 512) and torch.stack(ds.images).shape == (30, 1, 512, 512)
    assert torch.bincount(masks.flatten().long()).nonzero().flatten().tolist() == [0, 1]
    fraction = masks.flatten(1).double().mean(1)
    assert abs(float(fraction.mean()) - 0.22) < 0.005  # membranes: 22.0 % of the pixels (README)
    assert all(foreground_flags(ds))


def test_isbi_study_entry():
    root = _isbi_dir()
    spec = {"name": "isbi", "type": "folder", "images": str(root / "images"), "masks": str(root / "masks"),
            "classes": {0: 1, 255: 0}, "split": {"train": "0-19", "val": "20-24", "test": "25-29"},
            "tile": None, "crop": 256, "quadrants": True}
    data = build_dataset(spec)
    assert (len(data.train), len(data.val), len(data.test)) == (20, 20, 20)
    assert data.num_classes == 2 and data.in_channels == 1
    assert data.val.names[:2] == ["20#q0", "20#q1"] and data.test.names[-1] == "29#q3"
    x, y = data.train[0]
    assert x.shape == (1, 256, 256) and set(y.unique().tolist()) <= {0, 1}
    assert data.val[0][0].shape == (1, 256, 256)
