"""The up-front image scan: every bad file named, policies, the decode cache."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unreid.data.image_check as image_check
from unreid.data.image_check import BadImagesError, ImageCheck, check_images, decode_error
from unreid.data.image_dataset import read_image
from unreid.data.samples import Sample


def write_image(path: Path, fmt: str, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> list[Sample]:
    """Good and bad files interleaved, so order and completeness both show."""
    good_jpg = write_image(tmp_path / "0_good.jpg", "JPEG", 1)
    (tmp_path / "1_zero.jpg").write_bytes(b"")
    data = write_image(tmp_path / "tmp.jpg", "JPEG", 2).read_bytes()
    (tmp_path / "2_truncated.jpg").write_bytes(data[: len(data) // 2])
    write_image(tmp_path / "3_good.png", "PNG", 3)
    (tmp_path / "4_text.jpg").write_text("not an image at all\n")
    write_image(tmp_path / "5_good.bmp", "BMP", 4)
    png = write_image(tmp_path / "tmp.png", "PNG", 5).read_bytes()
    (tmp_path / "6_truncated.png").write_bytes(png[: len(png) - 40])
    names = [
        "0_good.jpg",
        "1_zero.jpg",
        "2_truncated.jpg",
        "3_good.png",
        "4_text.jpg",
        "5_good.bmp",
        "6_truncated.png",
    ]
    assert good_jpg.name == names[0]
    return [Sample(str(tmp_path / n), camera=i % 3, pid=i) for i, n in enumerate(names)]


BAD = ("1_zero.jpg", "2_truncated.jpg", "4_text.jpg", "6_truncated.png")


def training_reader_fails(path: str) -> bool:
    try:
        read_image(path).load()
    except OSError:
        return True
    return False


def test_verdicts_agree_with_the_training_reader(mixed: list[Sample]) -> None:
    for sample in mixed:
        bad = Path(sample.path).name in BAD
        assert training_reader_fails(sample.path) == bad, sample.path
        assert (decode_error(sample.path) is not None) == bad, sample.path


def test_a_header_check_alone_would_pass_the_truncated_jpeg(mixed: list[Sample]) -> None:
    # why the scan decodes fully: PIL's verify() reads headers and accepts this file
    truncated = next(s.path for s in mixed if s.path.endswith("2_truncated.jpg"))
    with Image.open(truncated) as img:
        img.verify()
    assert "truncated" in decode_error(truncated)


def test_policy_error_names_every_bad_file_with_its_reason(mixed: list[Sample]) -> None:
    with pytest.raises(BadImagesError) as info:
        check_images(mixed, policy="error", workers=2)
    err = info.value
    assert isinstance(err, ValueError)
    assert [Path(p).name for p, _ in err.bad] == list(BAD)
    text = str(err)
    assert text.startswith(f"{len(BAD)} image(s) cannot be decoded")
    for path, reason in err.bad:
        assert f"{path}: {reason}" in text
    reasons = dict((Path(p).name, r) for p, r in err.bad)
    assert reasons["1_zero.jpg"] == "empty file (0 bytes)"
    assert "truncated" in reasons["2_truncated.jpg"]
    assert reasons["4_text.jpg"] == "not a recognised image format (starts with b'not an i')"


def test_policy_skip_keeps_the_good_samples_in_order(mixed: list[Sample]) -> None:
    result = check_images(list(reversed(mixed)), policy="skip", workers=3)
    assert isinstance(result, ImageCheck)
    good = [s for s in reversed(mixed) if Path(s.path).name not in BAD]
    assert result.kept == good
    assert [Path(p).name for p, _ in result.bad] == list(reversed(BAD))


def test_all_good_passes_under_either_policy(mixed: list[Sample]) -> None:
    good = [s for s in mixed if Path(s.path).name not in BAD]
    for policy in ("error", "skip"):
        assert check_images(good, policy=policy) == ImageCheck(kept=good, bad=[])


def test_duplicate_paths_are_decoded_once_and_all_kept(
    mixed: list[Sample], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_decodes(monkeypatch)
    twice = [mixed[0], dataclasses.replace(mixed[0], pid=99)]  # one file, two samples
    result = check_images([*twice, mixed[3]], workers=0)
    assert result.kept == [*twice, mixed[3]] and calls == [mixed[0].path, mixed[3].path]


def test_the_same_verdicts_with_or_without_threads(mixed: list[Sample], tmp_path: Path) -> None:
    copies = tmp_path / "copies"
    copies.mkdir()
    many = []
    for i in range(150):  # several chunks of the thread pool, good and bad interleaved
        source = mixed[i % len(mixed)]
        target = copies / f"{i:03d}_{Path(source.path).name}"
        shutil.copyfile(source.path, target)
        many.append(Sample(str(target), camera=0))
    inline = check_images(many, policy="skip", workers=0)
    threaded = check_images(many, policy="skip", workers=4, progress=True)
    assert threaded == inline
    assert [Path(p).name[4:] for p, _ in inline.bad] == [
        Path(s.path).name for s in (mixed * 22)[:150] if Path(s.path).name in BAD
    ]


def test_a_missing_file_is_a_bad_file(mixed: list[Sample], tmp_path: Path) -> None:
    gone = Sample(str(tmp_path / "gone.jpg"), camera=0)
    result = check_images([gone, mixed[0]], policy="skip")
    assert result.bad == [(gone.path, "cannot read: no such file")]
    assert result.kept == [mixed[0]]


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = image_check.decode_error

    def counting(path: str) -> str | None:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(image_check, "decode_error", counting)
    return calls


def test_cache_skips_unchanged_files_and_redecodes_changed_ones(
    mixed: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache" / "images.json"
    calls = count_decodes(monkeypatch)
    first = check_images(mixed, policy="skip", cache_path=cache, workers=2)
    assert sorted(calls) == sorted(s.path for s in mixed) and cache.is_file()
    calls.clear()
    second = check_images(mixed, policy="skip", cache_path=cache, workers=2)
    assert calls == [] and second == first
    with pytest.raises(BadImagesError) as info:  # cached bad verdicts still count
        check_images(mixed, policy="error", cache_path=cache)
    assert info.value.bad == first.bad and calls == []
    touched = mixed[3].path
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    check_images(mixed, policy="skip", cache_path=cache)
    assert calls == [touched]


def test_a_file_repaired_in_place_is_seen_as_repaired(mixed: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "images.json"
    zero = next(s for s in mixed if s.path.endswith("1_zero.jpg"))
    assert check_images([zero], policy="skip", cache_path=cache).kept == []
    write_image(Path(zero.path), "JPEG", 9)  # size (and mtime) change
    assert check_images([zero], policy="skip", cache_path=cache).kept == [zero]


def test_cache_keeps_entries_of_other_scans(mixed: list[Sample], tmp_path: Path) -> None:
    cache = tmp_path / "images.json"
    check_images(mixed[:2], policy="skip", cache_path=cache)
    check_images(mixed[2:], policy="skip", cache_path=cache)
    files = json.loads(cache.read_text())["files"]
    assert sorted(files) == sorted(s.path for s in mixed)
    for s in mixed:
        st = os.stat(s.path)
        assert files[s.path][:2] == [st.st_size, st.st_mtime_ns]


@pytest.mark.parametrize("content", ["{not json", '{"version": 0, "files": {}}', "[1, 2]"])
def test_an_unusable_cache_means_a_fresh_scan(
    mixed: list[Sample],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    content: str,
) -> None:
    cache = tmp_path / "images.json"
    cache.write_text(content)
    calls = count_decodes(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="unreid.data.image_check"):
        result = check_images(mixed, policy="skip", cache_path=cache)
    assert len(calls) == len(mixed) and len(result.kept) == len(mixed) - len(BAD)
    assert str(cache) in caplog.text
    assert json.loads(cache.read_text())["version"] == image_check.CACHE_VERSION


def test_unknown_policy_and_bad_worker_count_are_refused(mixed: list[Sample]) -> None:
    with pytest.raises(ValueError, match=r"must be one of error, skip, found 'ignore'"):
        check_images(mixed, policy="ignore")
    with pytest.raises(ValueError, match="workers must be >= 0, found -1"):
        check_images(mixed, workers=-1)


def test_unreadable_files_are_not_cached(
    mixed: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # permissions or I/O can heal without the size or mtime changing
    cache = tmp_path / "images.json"
    real = image_check.decode_error
    flaky = {mixed[0].path}

    def decode(path: str) -> str | None:
        return "cannot read: Permission denied" if path in flaky else real(path)

    monkeypatch.setattr(image_check, "decode_error", decode)
    first = check_images(mixed[:1], policy="skip", cache_path=cache)
    assert first.bad == [(mixed[0].path, "cannot read: Permission denied")]
    flaky.clear()
    assert check_images(mixed[:1], policy="skip", cache_path=cache).kept == mixed[:1]


def test_malformed_cache_entries_are_decoded_again(
    mixed: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "images.json"
    st = os.stat(mixed[0].path)
    entries = {mixed[0].path: [st.st_size, st.st_mtime_ns, 5]}  # a reason must be text
    cache.write_text(json.dumps({"version": image_check.CACHE_VERSION, "files": entries}))
    calls = count_decodes(monkeypatch)
    assert check_images(mixed[:1], cache_path=cache).kept == mixed[:1]
    assert calls == [mixed[0].path]


def test_a_cache_that_cannot_be_written_does_not_stop_the_scan(
    mixed: list[Sample], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a_file").write_text("")
    cache = tmp_path / "a_file" / "images.json"  # its folder is a file
    with caplog.at_level(logging.WARNING, logger="unreid.data.image_check"):
        result = check_images(mixed, policy="skip", cache_path=cache)
    assert len(result.kept) == len(mixed) - len(BAD)
    assert f"cannot write the image check cache {cache}" in caplog.text


def test_median_size_reads_headers_and_skips_what_does_not_open(tmp_path: Path) -> None:
    from unreid.data.image_check import median_size

    paths = []
    for i, (h, w) in enumerate([(40, 20), (60, 30), (50, 24), (200, 100), (44, 22)]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (w, h)).save(path)
        paths.append(str(path))
    (tmp_path / "bad.jpg").write_text("not an image")
    assert median_size([*paths, str(tmp_path / "bad.jpg")]) == (50, 24, 5)
    assert median_size(paths, limit=2) == (50, 24, 2)  # spread: images 0 and 2 (upper median)
    assert median_size([str(tmp_path / "bad.jpg")]) is None and median_size([]) is None
