"""Data features the report's tests rely on: small images padded or skipped when tiling, groups and
splits from a data set's manifest, evaluation restricted to items with foreground after cutting."""
import numpy as np
import pytest
import torch
from PIL import Image

from seglosses.bench.data import (
    SegmentationDataset,
    TiledDataset,
    build_dataset,
    foreground_flags,
    positive_evaluation,
)
from seglosses.bench.evaluate import describe_items


def _pair(h, w, value=0):
    image = torch.arange(h * w, dtype=torch.float32).view(1, h, w) / (h * w)
    mask = torch.zeros(h, w, dtype=torch.long)
    mask[0, 0] = value
    return image, mask


def test_small_item_padded_by_reflection_keeps_mask_and_image_aligned():
    image, mask = _pair(3, 6, value=1)
    tiled = TiledDataset(SegmentationDataset([image], [mask]), 4, 2)
    assert tiled.padded == 1 and len(tiled) == 2  # 3x6 -> 4x6: tiles at columns 0 and 2
    tile_image, tile_mask = tiled[0]
    assert tile_image.shape == (1, 4, 4) and tile_mask.shape == (4, 4)
    # row 3 mirrors row 1 (reflection about the last row), in the image and in the mask
    assert torch.equal(tile_image[0, 3], image[0, 1, :4]) and torch.equal(tile_mask[3], mask[1, :4])
    assert describe_items(tiled) == "4-px tiles (stride 2; 1 small image(s) padded (reflect)) of the source images"


def test_small_item_padded_with_constant_background():
    image, mask = _pair(3, 3, value=1)
    tiled = TiledDataset(SegmentationDataset([image], [mask]), 5, 5, pad_mode="constant")
    tile_image, tile_mask = tiled[0]
    assert tile_image.shape == (1, 5, 5)
    assert tile_image[0, 3:].abs().sum() == 0 and tile_mask[3:].sum() == 0 and tile_mask[0, 0] == 1


def test_small_items_skipped_with_a_count_or_rejected():
    ds = SegmentationDataset([_pair(6, 6)[0], _pair(3, 6)[0]], [_pair(6, 6)[1], _pair(3, 6)[1]])
    tiled = TiledDataset(ds, 4, 2, small="skip")
    assert tiled.skipped == 1 and len(tiled) == 4 and all(n.startswith("0@") for n in tiled.names)
    with pytest.raises(ValueError, match=r"`tile` must be an int in \[1, min\(height, width\)\]; got 4 for a 3x6 "
                                         r"image \(item 1, '1'; set `small` to 'pad' or 'skip'\)"):
        TiledDataset(ds, 4, 2, small="error")
    with pytest.raises(ValueError, match="`tile` must fit at least one item; got 8 and all 2 items smaller"):
        TiledDataset(ds, 8, 4, small="skip")
    with pytest.raises(ValueError, match="`small` must be 'pad', 'skip' or 'error'; got 'crop'"):
        TiledDataset(ds, 4, small="crop")
    with pytest.raises(ValueError, match="`pad_mode` must be 'reflect' or 'constant'; got 'wrap'"):
        TiledDataset(ds, 4, pad_mode="wrap")


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rows = ["id,patient,where"]
    for i in range(8):
        h = 10 if i != 3 else 6  # one image smaller than the tile
        Image.fromarray((np.random.default_rng(i).random((h, 12)) * 255).astype(np.uint8)).save(
            tmp_path / "images" / f"{i:03d}.png")
        mask = np.zeros((h, 12), np.uint8)
        if i % 2 == 0:
            mask[:3, :3] = 1  # foreground only in the top-left quadrant
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i:03d}.png")
        rows.append(f"{i:03d},p{i // 2},{'train' if i < 4 else 'test' if i < 6 else 'val'}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_groups_and_split_from_a_manifest(folder):
    spec = {"type": "folder", "images": str(folder / "images"), "masks": str(folder / "masks"),
            "split": {"file": str(folder / "manifest.csv"), "column": "where", "key": "id"},
            "group_by": {"file": str(folder / "manifest.csv"), "column": "patient", "key": "id"},
            "tile": 8, "stride": 8, "quadrants": True}
    data = build_dataset(spec)
    assert data.test.base.groups == ["p2"] * 8  # images 004, 005 of patient p2: 4 tiles each
    assert set(data.train.groups) == {"p0", "p1"}
    assert data.train.padded == 1  # 006x12 image 003 padded to the tile, not a failed data set
    with pytest.raises(ValueError, match="`group_by` file must have columns 'nope' and 'id'"):
        build_dataset({**spec, "group_by": {"file": str(folder / "manifest.csv"), "column": "nope", "key": "id"}})
    with pytest.raises(ValueError, match="`split` file must have columns 'split' and 'id'"):
        build_dataset({**spec, "split": {"file": str(folder / "manifest.csv")}})


def test_positive_evaluation_filters_after_cutting_into_quadrants(folder):
    spec = {"type": "folder", "images": str(folder / "images"), "masks": str(folder / "masks"),
            "split": {"file": str(folder / "manifest.csv"), "column": "where", "key": "id"}, "quadrants": True}
    data = build_dataset({**spec, "positives_only": True})
    # positives_only on the images keeps image 004 with all four quadrants, three of them empty
    assert len(data.test) == 4 and sum(foreground_flags(data.test)) == 1
    data = positive_evaluation(build_dataset(spec))
    assert data.test.names == ["004#q0"] and data.val.names == ["006#q0"]
    assert describe_items(data.test) == "quadrants of the source images, with foreground only"
    assert data.test.groups == ["004"]  # the source image is the cluster
