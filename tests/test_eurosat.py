"""Tests for pimc_jax.data.eurosat on tiny EuroSAT archives in the official layout.

References: the uint16 arrays written into the GeoTIFFs, the JPEG bytes stored in the
archive decoded by Pillow, the class folder of each file and the split lists written.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import tifffile
from format_writers import (
    EUROSAT_ALL_SUBDIR,
    EUROSAT_CLASSES,
    EUROSAT_RGB_SUBDIR,
    write_eurosat_archives,
)
from PIL import Image

from pimc_jax.data import eurosat


def _decoded_jpegs(path) -> dict[bytes, tuple[str, int]]:
    """Pixels of every JPEG in EuroSAT.zip -> (stem, class index)."""
    decoded = {}
    with zipfile.ZipFile(path / "EuroSAT.zip") as archive:
        for class_index, class_name in enumerate(EUROSAT_CLASSES):
            prefix = f"{EUROSAT_RGB_SUBDIR}/{class_name}/"
            for member in archive.namelist():
                if member.startswith(prefix) and member.endswith(".jpg"):
                    pixels = np.asarray(Image.open(io.BytesIO(archive.read(member))))
                    stem = member[len(prefix) : -len(".jpg")]
                    decoded[pixels.tobytes()] = (stem, class_index)
    return decoded


def _identify(images: np.ndarray, decoded: dict[bytes, tuple[str, int]]) -> list[tuple[str, int]]:
    pixels = np.round(images * 255).astype(np.uint8)
    return [decoded[image.tobytes()] for image in pixels]


def test_rgb_seeded_stratified_split(tmp_path):
    written = write_eurosat_archives(tmp_path, per_class=5, all_bands=False)
    decoded = _decoded_jpegs(tmp_path)
    seen = {}
    for split, per_class in (("train", 3), ("validation", 1), ("test", 1)):
        images, labels, class_names, band_names = eurosat.load_eurosat(tmp_path, "rgb", split)
        assert images.shape == (10 * per_class, 64, 64, 3) and images.dtype == np.float32
        assert labels.dtype == np.int32
        assert class_names == EUROSAT_CLASSES
        assert band_names == ("B04", "B03", "B02")
        # Every image is exactly one JPEG of the archive, scaled by 1/255, with its label.
        identities = _identify(images, decoded)
        np.testing.assert_array_equal(labels, [class_index for _, class_index in identities])
        # Stratified: each class has the same share in each split.
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
        for stem, _ in identities:
            assert stem not in seen
            seen[stem] = split
        # Labels match the pixels too (class colour, before JPEG).
        for image, (stem, _) in zip(images, identities, strict=True):
            original = written["rgb"][f"{stem}.jpg"].astype(np.float32) / 255
            assert np.abs(image.mean((0, 1)) - original.mean((0, 1))).max() < 0.02
    assert len(seen) == 50

    # Seeded: a preparation elsewhere gives the same assignment.
    train_again, _, _, _ = eurosat.load_eurosat(tmp_path, "rgb", "train", data_dir=tmp_path / "b")
    assert {stem for stem, _ in _identify(train_again, decoded)} == {
        stem for stem, split in seen.items() if split == "train"
    }


def test_stratified_split_counts_on_full_size():
    labels = np.repeat(np.arange(10), [3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000])
    assignment = eurosat.seeded_split_assignment(labels)
    assert np.bincount(assignment).tolist() == [16_200, 5_400, 5_400]
    for label in range(10):
        count = np.sum(labels == label)
        assert np.sum(assignment[labels == label] == 1) == round(0.2 * count)


def test_split_lists_are_followed_and_changes_rebuild(tmp_path):
    write_eurosat_archives(tmp_path, per_class=5, all_bands=False)
    images, _, _, _ = eurosat.load_eurosat(tmp_path, "rgb", "train")
    assert len(images) == 30  # seeded 60 %
    written = write_eurosat_archives(tmp_path, per_class=5, all_bands=False, split_lists=True)
    decoded = _decoded_jpegs(tmp_path)
    for split, short in (("train", "train"), ("validation", "val"), ("test", "test")):
        images, labels, _, _ = eurosat.load_eurosat(tmp_path, "rgb", short)
        stems = sorted(stem for stem, _ in _identify(images, decoded))
        assert stems == sorted(written["splits"][split])
    # n = 1, 4 -> train; 2, 5 -> validation; 3 -> test
    assert len(written["splits"]["train"]) == 20


def test_all_bands_values_and_band_order(tmp_path):
    written = write_eurosat_archives(tmp_path, per_class=3, rgb=False, split_lists=True)
    images, labels, _, band_names = eurosat.load_eurosat(tmp_path, "all", "validation")
    assert band_names[-1] == "B8A" and band_names[:3] == ("B01", "B02", "B03")
    assert len(band_names) == 13
    # The validation list holds <Class>_2 for each class, in class order.
    expected = np.stack([written["all"][f"{name}_2.tif"] for name in EUROSAT_CLASSES])
    np.testing.assert_allclose(images, expected.astype(np.float64) / 10_000, rtol=1e-6)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.arange(10))


def test_planar_tiffs_are_read_band_last(tmp_path):
    written = write_eurosat_archives(
        tmp_path, per_class=1, rgb=False, split_lists=True, planar_tiff=True
    )
    images, labels, _, _ = eurosat.load_eurosat(tmp_path, "all", "train")
    expected = np.stack([written["all"][f"{name}_1.tif"] for name in EUROSAT_CLASSES])
    np.testing.assert_allclose(images, expected.astype(np.float64) / 10_000, rtol=1e-6)
    # With one image per class the lists leave validation and test empty.
    with pytest.raises(ValueError, match="'test'.*holds no image"):
        eurosat.load_eurosat(tmp_path, "all", "train+test")


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="EuroSAT.zip"):
        eurosat.load_eurosat(tmp_path, "rgb")
    write_eurosat_archives(tmp_path, per_class=1, all_bands=False)
    with pytest.raises(ValueError, match="EuroSATallBands.zip"):
        eurosat.load_eurosat(tmp_path, "all")
    with pytest.raises(ValueError, match="config"):
        eurosat.load_eurosat(tmp_path, "ms")
    with pytest.raises(ValueError, match="split"):
        eurosat.load_eurosat(tmp_path, "rgb", "training")
    (tmp_path / "train.txt").write_text("Forest_1.jpg\n")
    with pytest.raises(ValueError, match="incomplete"):
        eurosat.load_eurosat(tmp_path, "rgb")
    (tmp_path / "val.txt").write_text("Forest_9.jpg\n")
    (tmp_path / "test.txt").write_text("River_1.jpg\n")
    with pytest.raises(ValueError, match=r"val.txt.*Forest_9"):
        eurosat.load_eurosat(tmp_path, "rgb")
    (tmp_path / "val.txt").write_text("River_1.jpg\n")
    with pytest.raises(ValueError, match="River_1"):
        eurosat.load_eurosat(tmp_path, "rgb")


def test_missing_class_and_bad_image_are_named(tmp_path):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((64, 64, 13), np.uint16), photometric="minisblack")
    with zipfile.ZipFile(tmp_path / "EuroSATallBands.zip", "w") as archive:
        for name in EUROSAT_CLASSES[:-1]:
            archive.writestr(f"{EUROSAT_ALL_SUBDIR}/{name}/{name}_1.tif", buffer.getvalue())
        archive.writestr(f"{EUROSAT_ALL_SUBDIR}/notes.txt", b"ignored")
    with pytest.raises(ValueError, match="SeaLake"):
        eurosat.load_eurosat(tmp_path, "all")
    with zipfile.ZipFile(tmp_path / "EuroSATallBands.zip", "a") as archive:
        archive.writestr(f"{EUROSAT_ALL_SUBDIR}/SeaLake/SeaLake_1.tif", b"not a tiff")
    with pytest.raises(ValueError, match="SeaLake_1.tif"):
        eurosat.load_eurosat(tmp_path, "all")
