"""Bad and unusual input images: each one is either converted correctly or refused with a specific message."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nstdiff import InputError, Settings
from nstdiff.imageio import atomic_write, check_writable, load_image, save_png


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
