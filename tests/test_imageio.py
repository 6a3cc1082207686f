"""Bad and unusual input images: each one is either converted correctly or refused with a specific message."""
from __future__ import annotations

import io
import json
import os
import socket

import numpy as np
import pytest
from PIL import ExifTags, Image, JpegImagePlugin

from nstdiff import InputError, Settings
from nstdiff.imageio import atomic_write, check_writable, load_image, resize_long_side, save_image, save_png


def test_truncated_png_is_refused_as_damaged(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "PNG", compress_level=0)
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(path, "content")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(InputError, match="content image '.*notes.jpg' is not a readable image"):
        load_image(path, "content")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png", "style 1")


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(path)
    with pytest.raises(InputError, match=r"400x300 = 0.12 MP, over the limit of 0.1 MP; .*NSTDIFF_MAX_INPUT_PIXELS"):
        load_image(path, "content", Settings(max_input_pixels=100_000))


def test_decompression_bomb_header_is_refused(tmp_path):
    # a 1-colour PNG that claims 30000x30000 pixels compresses to a few hundred KB
    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)
    with pytest.raises(InputError, match="30000x30000|decompression bomb"):
        load_image(path, "content")


def test_file_over_the_byte_limit(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    with pytest.raises(InputError, match="MiB, over the limit"):
        load_image(path, "content", Settings(max_input_bytes=1000))


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("L", (8, 8), 128), (128, 128, 128)),
        (lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 0)), (255, 255, 255)),  # transparent → white
        (lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 255)), (255, 0, 0)),
        (lambda: Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"), (0, 0, 255)),
        (lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),
        (lambda: Image.fromarray(np.full((8, 8), 65535, np.uint16)), (255, 255, 255)),  # 16-bit scaled, not clipped
        (lambda: Image.fromarray(np.full((8, 8), 32896, np.uint16)), (128, 128, 128)),
    ],
)
def test_odd_modes_become_rgb(tmp_path, make, expected):
    image = make()
    path = tmp_path / ("in.tif" if image.mode == "CMYK" else "in.png")
    image.save(path)
    loaded = load_image(path, "content")
    assert loaded.mode == "RGB"
    assert tuple(np.asarray(loaded)[4, 4]) == expected


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif)
    assert load_image(path, "content").size == (20, 40)


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "out.png")
    with pytest.raises(InputError, match="is a folder"):
        check_writable(tmp_path)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def failing(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match="No space left"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_png_carries_text_metadata(tmp_path):
    path = save_png(Image.new("RGB", (4, 4)), tmp_path / "x.png", {"nstdiff": '{"seed": 3}'})
    assert Image.open(path).text["nstdiff"] == '{"seed": 3}'


def test_only_new_names_and_regular_files_are_written(tmp_path):
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"keep me")
    (tmp_path / "link.png").symlink_to(precious)
    os.mkfifo(tmp_path / "pipe.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.png"))
    image = Image.new("RGB", (4, 4))
    for name, kind in (("link.png", "a symbolic link"), ("pipe.png", "a named pipe"), ("sock.png", "a socket")):
        with pytest.raises(InputError, match=f"output '.*{name}' is {kind}, and nstdiff writes only regular files"):
            save_image(image, tmp_path / name)
    server.close()
    with pytest.raises(InputError, match="output '/dev/null' is a device"):
        check_writable("/dev/null")  # only checked: a device node is never written, even by root
    assert (tmp_path / "link.png").is_symlink() and precious.read_bytes() == b"keep me"
    assert os.path.getsize(save_image(image, precious)) > len(b"keep me")  # a regular file is replaced


def test_the_suffix_picks_the_format_and_the_metadata_travels(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    text = {"nstdiff": '{"seed": 3}'}
    for name, kind in (("a.png", "PNG"), ("a.jpg", "JPEG"), ("a.jpeg", "JPEG"), ("a.WEBP", "WEBP")):
        saved = Image.open(save_image(image, tmp_path / name, text))
        assert saved.format == kind
        if kind == "PNG":
            assert saved.text == text
        else:
            comment = saved.getexif().get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment]
            assert json.loads(comment.removeprefix("ASCII\0\0\0")) == text
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.WEBP").convert("RGB")), np.asarray(image))  # lossless
    with pytest.raises(InputError, match=r"cannot write '.*a\.gif': .* written as \.png, \.jpg, \.jpeg, \.webp"):
        check_writable(tmp_path / "a.gif", {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"})
    with pytest.raises(InputError, match=r"\.png, \.jpg, \.jpeg, \.webp"):
        save_image(image, tmp_path / "a.tiff")
    assert not (tmp_path / "a.gif").exists() and not (tmp_path / "a.tiff").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_results_get_the_mode_of_any_new_file(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        written = save_png(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    finally:
        os.umask(previous)
    assert os.stat(written).st_mode & 0o777 == mode


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    gradient = np.linspace(0, 255, 2400, dtype=np.float32)
    array = np.stack([np.tile(gradient, (1600, 1)), np.tile(gradient[:1600, None], (1, 2400)),
                      np.full((1600, 2400), 90, np.float32)], axis=-1).astype(np.uint8)
    Image.fromarray(array).save(path, quality=95)
    drafted = []
    original = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: drafted.append(original(self, mode, size)))
    small = load_image(path, "content", max_side=64)
    assert small.size == (64, 43) and drafted[0][1][2:] == (300, 200)  # decoded at 1/8 scale, then resized
    full = np.asarray(resize_long_side(Image.fromarray(array), 64), np.float32)
    assert np.abs(np.asarray(small, np.float32) - full).mean() < 3  # the same picture as a full decode gives


def test_an_extreme_aspect_ratio_keeps_a_pixel_each_way(tmp_path):
    path = tmp_path / "line.png"
    Image.new("RGB", (20000, 1), (10, 20, 30)).save(path)
    assert load_image(path, "content", max_side=64).size == (64, 1)
