"""The bad-input corpus: every hostile or odd file and value is generated here (no binary blobs in the repository).

A `Case` is one input and how it reaches the CLI (`cli`: argv) and the app (`app`: endpoint, form values); `F` names
a file of the case (else of the shared good set), `OUT` a path in the case's CLI output folder. `expect` is "error"
(a one-line refusal), "ok" (a correct result, checked by `result`) or "either"; a pair gives the CLI's and the app's.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

NAN, INF, E = math.nan, math.inf, "either"
RNG = np.random.default_rng(12)


@dataclass(frozen=True)
class F:
    name: str


@dataclass(frozen=True)
class OUT:
    name: str


@dataclass
class Case:
    id: str
    cli: list | None
    app: tuple[str, dict] | None
    files: dict[str, bytes | Callable[[Path], None]] = field(default_factory=dict)  # bytes, or a maker of the path
    expect: str | tuple[str, str] = "error"
    result: tuple = ()  # ("image", side) ("image_wh", (w, h)) ("format", "JPEG") ("audio",) ("mesh",) ("lora", name)
    outs: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # already in the output folder: must stay
    raw: bool = False  # app values JSON has no spelling for (NaN, inf): sent as raw JSON

    @property
    def category(self) -> str:
        return self.id.split("-", 1)[0]


# -- bytes -------------------------------------------------------------------------------------------------------------

def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), np.uint8), "RGB").convert(mode)


def flat(w: int, h: int, color=(255, 255, 255), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (w, h), color)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(w: int, h: int, depth=8, ctype=2, rows: bytes = b"", extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + idat + chunk(b"IEND", b"")


def exif_jpeg(orientation: int = 6, app1: bytes | None = None) -> bytes:
    if app1 is None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        return encode(noise(40, 30), "JPEG", exif=exif.tobytes())
    data = encode(noise(40, 30), "JPEG")
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def animated_gif() -> bytes:
    frames = [flat(40, 30, c).convert("P") for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def wav(samples: np.ndarray, rate: int = 22050, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, samples, rate, subtype=subtype, format=fmt)
    return out.getvalue()


def tone(seconds: float, rate: int = 22050, channels: int = 1) -> np.ndarray:
    one = 0.3 * np.sin(2 * np.pi * 330 * np.arange(int(seconds * rate)) / rate)
    return np.stack([one * (1 - c / (2 * channels)) for c in range(channels)], axis=1).astype(np.float32)


def wav_header(rate: int, channels=1, bits=16, data=b"", data_size=None, with_fmt=True) -> bytes:
    block = channels * bits // 8
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    body = b"WAVE" + fmt * with_fmt + b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def safetensors(tensors: dict[str, Any], meta: dict | None = None, header: bytes | None = None) -> bytes:
    spec, data = {}, b""
    for key, value in tensors.items():
        raw = np.asarray(value, np.float32).tobytes()
        spec[key] = {"dtype": "F32", "shape": list(np.shape(value)), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header if header is not None else json.dumps({**spec, **({"__metadata__": meta} if meta else {})}).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def lora(rank=4, width=768, a_shape=None, b_shape=None, fill=0.01, kohya=False, **kw) -> bytes:
    a, b = np.full(a_shape or (rank, width), fill, np.float32), np.full(b_shape or (320, rank), fill, np.float32)
    if kohya:
        key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
        return safetensors({f"{key}.lora_down.weight": a, f"{key}.lora_up.weight": b, f"{key}.alpha": np.float32(rank)})
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    return safetensors({f"{key}.lora_A.weight": a, f"{key}.lora_B.weight": b}, **kw)


def edited(edit: Callable[[dict], None]) -> bytes:  # the good LoRA with its header edited (and its length right)
    good = lora()
    size = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8 : 8 + size])
    edit(header["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"])
    return safetensors({}, header=json.dumps(header).encode()) + good[8 + size :]


class Touch:  # unpickling this creates a marker file beside the pickle: proof that it was opened
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickled(p: Path) -> None:
    p.write_bytes(pickle.dumps({"state_dict": Touch(str(p.parent / "PICKLE-WAS-OPENED"))}))


TETRA = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"
FACES = "f 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"
GLTF_BUFFER = np.array([0, 0, 0, 1, 0, 0, 0, 1, 0], np.float32).tobytes() + struct.pack("<3H", 0, 1, 2) + b"\0" * 6


def gltf(uri: str, count: int = 3) -> bytes:
    return json.dumps({
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"uri": uri, "byteLength": 48}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3", "min": [0, 0, 0],
                       "max": [1, 1, 0]}, {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"}],
    }).encode()


def outside(p: Path) -> None:  # a real buffer one folder above the model: reachable only through ".."
    (p.parent.parent / f"{p.parent.name}-outside.bin").write_bytes(GLTF_BUFFER)
    p.write_bytes(gltf(f"../{p.parent.name}-outside.bin"))


def ply(vertices: int, body: bytes, binary=False) -> bytes:
    return (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {vertices}\nproperty "
            "float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            "end_header\n").encode() + body


def glb_box() -> bytes:
    import trimesh

    return trimesh.creation.box().export(file_type="glb")


def device(p: Path) -> None:  # a character device like /dev/full, made here so the real one is never at risk
    os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 7))


def link_to_previous(p: Path) -> None:  # an output path that is a link to a previous result, which must survive
    target = p.parent.parent.parent / "previous" / f"{p.parent.name}.png"
    target.write_bytes(encode(flat(8, 8)))
    p.symlink_to(target)


def shared_files() -> dict[str, bytes]:
    """The good inputs every case may use beside its bad one."""
    ramp = np.linspace(40, 220, 40, dtype=np.uint8)[None, :, None].repeat(30, 0).repeat(3, 2)
    return {"content.png": encode(Image.fromarray(ramp, "RGB")), "style.png": encode(noise(32, 32)),
            "clip.wav": wav(tone(1.0)), "good.safetensors": lora(), "tetra.obj": (TETRA + FACES).encode()}


# -- the cases, by category --------------------------------------------------------------------------------------------

TINY = ["--size", "32", "--steps", "2", "--encoder", "random", "--seed", "1", "--quiet"]
FORM = dict(content=F("content.png"), styles=[F("style.png")], weights="", method="gram", strength=0.8,
            preserve_color="none", style_scale=1.0, size=32, steps=2, seed=1, encoder="random", mask_file=None,
            mask_paint=None)
TEXT_FORM = dict(content=None, prompt="ink", preset="none", negative="", strength=0.8, structure="none", family="sd15",
                 fast=False, size=64, steps=1, seed=1, lora_1=None, lora_2=None, lora_3=None, weight_1=0.8,
                 weight_2=0.8, weight_3=0.8)
TEXT_CLI = ["texture", "--prompt", "ink", "--method", "diffusion-text", *TINY, "-o", OUT("r.png")]


def pad(rows: list[tuple], file: str) -> list[tuple]:  # (name, bytes[, expect[, file]]) with the defaults filled in
    return [(*row, *("error", file)[len(row) - 2:]) for row in rows]


def raw(values: dict | None) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for v in (values or {}).values())


def stylize(id, files=None, cli=(), app=None, content="content.png", style="style.png", out="r.png", **kw) -> Case:
    argv = None if cli is None else ["stylize", F(content), "--style", F(style), *TINY, *cli, "-o", OUT(out)]
    form = None if app is None else ("/stylize", {**FORM, "content": F(content), "styles": [F(style)], **app})
    return Case(id, argv, form, files or {}, raw=raw(app), **{"result": ("image", 32), **kw})


def image_cases() -> list[Case]:
    png, jpeg = encode(noise(40, 30)), encode(noise(40, 30), "JPEG", quality=95)
    gif = encode(flat(1, 1, 0, "P"), "GIF")
    rows = [  # name, bytes, expect ("error" if left out), file ("in.png" if left out; "style-…": the style image)
        ("zero-bytes", b""), ("text-renamed", b"hello, I am text\n" * 20), ("truncated-png", png[: len(png) // 2]),
        ("truncated-jpeg", jpeg[: len(jpeg) // 2], "error", "in.jpg"), ("png-zero-width", raw_png(0, 30)),
        ("png-bad-crc", png[:29] + bytes([png[29] ^ 0xFF]) + png[30:]),
        ("huge-declared-png", raw_png(100_000, 100_000)),  # decompression bombs: by the header…
        ("bomb-64mp-png", raw_png(8000, 8000, 1, 0, b"\0" * 1001 * 8000)),  # …and a real one, in 10 kB
        ("gif-huge-screen", gif[:6] + struct.pack("<HH", 65535, 65535) + gif[10:], "error", "in.gif"),
        ("bmp-huge-header", b"BM" + struct.pack("<IHHIIiiHHIIiiII", 54, 0, 0, 54, 40, 50000, 50000, 1, 24, 0, 0, 0,
                                                0, 0, 0), "error", "in.bmp"),
        ("ztxt-bomb", raw_png(4, 4, 8, 0, b"\0" * 20, chunk(b"zTXt", b"k\0\0" + zlib.compress(b"A" * 2**26)))),
        ("webp-truncated", encode(noise(40, 30), "WEBP")[:60], "error", "in.webp"),
        ("1x1", encode(flat(1, 1, (200, 10, 10))), "ok"), ("20000x1", encode(noise(20000, 1)), E),
        ("16bit-rgb", raw_png(40, 30, 16, 2, (b"\0" + b"\x80" * 240) * 30), "ok"),
        ("cmyk-jpeg", encode(noise(40, 30, "CMYK"), "JPEG"), "ok", "in.jpg"),
        ("palette-transparency", encode(noise(40, 30, "P"), transparency=3), "ok"),
        ("fully-transparent", encode(flat(40, 30, (0, 0, 0, 0), "RGBA")), "ok"),
        ("float-nan-tiff", encode(Image.fromarray(np.full((30, 40), np.nan, np.float32)), "TIFF"), E, "in.tif"),
        ("animated-gif", animated_gif(), "ok", "in.gif"), ("jpeg-named-png", jpeg, "ok"),
        ("exif-garbage", exif_jpeg(app1=b"Exif\0\0II*\0\xff\xff\xff\x7fjunk"), E, "in.jpg"),
        ("polyglot-png-zip", png + b"PK\x03\x04" + b"\0" * 26 + b"evil.sh#!/bin/sh\nrm -rf /\n", "ok"),
        ("polyglot-jpeg-html", jpeg[:2] + b"\xff\xfe\0\x20<script>alert(1)</script><?php ?>" + jpeg[2:], "ok",
         "in.jpg"),
        ("svg-renamed-png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/'
         b'passwd"/></svg>'),
        ("style-zero-bytes", b""), ("style-bomb", raw_png(100_000, 100_000)), ("style-1x1", encode(flat(1, 1)), "ok"),
    ]
    cases = [stylize(f"image-{name}", {file: data}, app={}, expect=expect, **{
        "style" if name.startswith("style-") else "content": file}) for name, data, expect, file in pad(rows, "in.png")]
    return cases + [
        stylize("image-exif-rotated", {"in.jpg": exif_jpeg(6)}, app={}, content="in.jpg", expect="ok",
                result=("image_wh", (24, 32))),  # 40x30 turned upright: 30x40, so 24x32
        # not uploadable through a browser: a folder, nothing, a pipe, a link to a system file
        stylize("image-folder-named-png", {"in.png": lambda p: p.mkdir()}, content="in.png"),
        stylize("image-missing-file", content="missing.png"),
        stylize("image-fifo", {"in.png": lambda p: os.mkfifo(p)}, content="in.png"),
        stylize("image-symlink-etc-passwd", {"in.png": lambda p: p.symlink_to("/etc/passwd")}, content="in.png"),
        stylize("image-init-image-bomb", {"b.png": raw_png(100_000, 100_000)},
                cli=["--init", "image", "--init-image", F("b.png")]),
        Case("image-texture-bomb", ["texture", "--style", F("in.png"), *TINY, "--size", "64", "-o", OUT("r.png")],
             ("/texture", dict(styles=[F("in.png")], size=64, steps=2, seed=1, encoder="random")),
             {"in.png": raw_png(100_000, 100_000)})]


def mask_cases() -> list[Case]:
    white = encode(flat(40, 30))
    rows = [("smaller", encode(flat(20, 15))), ("bigger", encode(flat(80, 60))),
            ("wrong-colours", encode(noise(40, 30))),
            ("all-black", encode(flat(40, 30, (0, 0, 0))), E), ("all-white", white, "ok"), ("zero-bytes", b""),
            ("text-renamed", b"#ffffff everywhere\n"), ("truncated", white[:40]), ("bomb", raw_png(100_000, 100_000)),
            ("transparent-rgba", encode(flat(40, 30, (255, 0, 0, 0), "RGBA")), E),
            ("exif-rotated", exif_jpeg(6), E), ("colors-not-hex", white, "error", ["--mask-colors", "#zzzzzz"]),
            ("colors-too-many", white, "error", ["--mask-colors", "#ffffff,#ff0000,#00ff00"])]
    return [stylize(f"mask-{name}", {"mask.png": data}, cli=["--mask", F("mask.png"), *flags],
                    app=None if flags else {"mask_file": F("mask.png")}, expect=expect)
            for name, data, expect, flags in [(*row, *("error", [])[len(row) - 2:]) for row in rows]]


AUDIO_CLI = ["--steps", "2", "--filters", "8", "--kernel-width", "1", "--n-fft", "256", "--seed", "1", "--quiet"]
AUDIO_FORM = dict(strength=0.5, mode="waveform", steps=2, filters=8, kernel_width=1, n_fft=256, sample_rate=22050,
                  seconds=0.5, seed=1)


def audio(id, files=None, content="clip.wav", style="clip.wav", cli=("--seconds", "0.5"), app=None, out="r.wav",
          **kw) -> Case:
    argv = None if cli is None else ["audio", F(content), "--style", F(style), *AUDIO_CLI, *cli, "-o", OUT(out)]
    form = None if app is None else ("/audio", {"content": F(content), "style": F(style), **AUDIO_FORM, **app})
    return Case(f"audio-{id}", argv, form, files or {}, result=("audio",), raw=raw(app), **kw)


def audio_cases() -> list[Case]:
    clip, mp3 = wav(tone(1.0)), wav(tone(1.0), subtype="MPEG_LAYER_III", fmt="MP3")
    nan = wav(np.full((22050, 1), np.nan, np.float32), subtype="FLOAT")
    rows = [  # name, bytes, expect ("error" if left out), file ("in.wav" if left out; "style-…": the style clip)
        ("zero-bytes", b""), ("text-renamed", b"RIFF? no, just text\n" * 10), ("truncated-wav", clip[:100], E),
        ("zero-samples", wav_header(22050)), ("silence", wav(tone(1.0) * 0)), ("nan-floats", nan),
        ("huge-sample-rate", wav_header(0xFFFFFFFF, data=b"\1\0" * 22050)),
        ("rate-1hz", wav_header(1, data=b"\0\x40" * 100), E), ("mono", clip, "ok"),
        ("stereo", wav(tone(1.0, channels=2)), "ok"), ("8-channels", wav(tone(1.0, channels=8)), "ok"),
        ("huge-amplitude", wav(tone(1.0) * 1e30, subtype="DOUBLE"), E),
        ("65535-channels", wav_header(22050, channels=65535, data=b"\0" * 4096)),
        ("data-size-ffffffff", wav_header(22050, data=clip[44:2044], data_size=0xFFFFFFFF), E),
        ("no-fmt-chunk", wav_header(22050, data=clip[44:], with_fmt=False)), ("too-short", wav(tone(0.1))),
        ("mp3-truncated", mp3[: len(mp3) // 3], E, "in.mp3"),
        ("mp3-id3-garbage", b"ID3\4\0\0\0\0\0\0" + b"\xff" * 400, "error", "in.mp3"),
        ("ogg-garbage", b"OggS\0\2" + b"\0" * 200, "error", "in.ogg"), ("png-renamed-wav", encode(noise(40, 30))),
        ("style-silence", wav(tone(1.0) * 0)), ("style-nan", nan),
    ]
    cases = [audio(name, {file: data}, app={}, expect=expect, **{
        "style" if name.startswith("style-") else "content": file}) for name, data, expect, file in pad(rows, "in.wav")]
    numbers = [("steps-0", "--steps", "0", "steps", 0), ("strength-2", "--strength", "2", "strength", 2.0),
               ("strength-nan", "--strength", "nan", "strength", NAN), ("n-fft-1000", "--n-fft", "1000", "n_fft", 1000),
               ("sample-rate-0", "--sample-rate", "0", "sample_rate", 0),
               ("seconds-nan", "--seconds", "nan", "seconds", NAN),
               ("seconds-huge", "--seconds", "1e9", "seconds", 1e9),
               ("filters-huge", "--filters", "1000000000", "filters", 10**9)]
    cases += [audio(id, cli=[flag, text], app={key: value}) for id, flag, text, key, value in numbers]
    long = wav(tone(121.0, rate=8000), rate=8000, subtype="PCM_U8")  # over the 120 s limit, and no --seconds
    return cases + [audio("longer-than-limit", {"long.wav": long}, "long.wav", cli=[], app={"seconds": 0}),
                    audio("output-mp3", out="r.mp3")]


MESH_CLI = ["--views", "1", "--view-size", "32", "--steps", "1", "--texture-size", "64", "--encoder", "random",
            "--seed", "1", "--quiet"]
MESH_FORM = dict(style=F("style.png"), mode="field", views=1, view_size=32, steps=1, texture_size=64, strength=0.7,
                 seed=1, encoder="random")


def mesh(id, files=None, model="tetra.obj", cli=(), app=None, out="r.glb", **kw) -> Case:
    argv = None if cli is None else ["mesh", F(model), "--style", F("style.png"), *MESH_CLI, *cli, "-o", OUT(out)]
    form = None if app is None else ("/mesh", {"files": [F(model)], **MESH_FORM, **app})
    return Case(f"mesh-{id}", argv, form, files or {}, result=("mesh",), raw=raw(app), **kw)


def mesh_cases() -> list[Case]:
    good = TETRA + FACES
    rows = [  # name, bytes (or a maker), expect ("error" if left out), file ("in.obj" if left out)
        ("obj-nan-vertex", (TETRA.replace("v 1 0 0", "v nan 0 0") + FACES).encode()),
        ("obj-inf-vertex", (TETRA.replace("v 1 0 0", "v inf 0 0") + FACES).encode()),
        ("obj-face-past-end", (TETRA + "f 1 2 99\n").encode()), ("obj-empty", b""),
        ("obj-degenerate-only", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n"),
        ("obj-huge-coordinates", good.replace("v 1 0 0", "v 1e308 0 0").encode(), E),
        ("obj-mtllib-etc-passwd", ("mtllib ../../../../../../etc/passwd\nusemtl x\n" + good).encode(), E),
        ("glb-garbage", bytes(RNG.integers(0, 256, 2048, np.uint8)), "error", "in.glb"),
        ("glb-huge-length", b"glTF" + struct.pack("<III", 2, 2**31, 2**30) + b"JSON{}", "error", "in.glb"),
        ("gltf-buffer-dotdot", gltf("../../../../../../etc/passwd"), "error", "in.gltf"),
        ("gltf-buffer-absolute", gltf("/etc/passwd"), "error", "in.gltf"),
        ("gltf-buffer-outside-folder", outside, "error", "in.gltf"),
        ("gltf-huge-count", gltf("data:application/octet-stream;base64,AAAA", count=10**9), "error", "in.gltf"),
        ("ply-huge-vertex-count", ply(4_000_000_000, b"0 0 0\n"), "error", "in.ply"),
        ("ply-huge-count-binary", ply(2**31, b"\0" * 12, binary=True), "error", "in.ply"),
        ("ply-face-past-end", ply(3, b"0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n"), "error", "in.ply"),
        ("ply-nan", ply(3, b"nan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"), "error", "in.ply"),
        ("stl-zero-triangles", b"\0" * 80 + struct.pack("<I", 0), "error", "in.stl"),
        ("stl-huge-count", b"\0" * 80 + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 50, "error", "in.stl"),
        ("unknown-suffix-fbx", good.encode(), "error", "in.fbx"), ("obj-valid", good.encode(), "ok"),
        ("glb-valid", glb_box(), "ok", "in.glb"),
    ]
    cases = [mesh(name, {file: data}, file, app={}, expect=expect) for name, data, expect, file in pad(rows, "in.obj")]
    obj = {"in.obj": ("mtllib in.mtl\nusemtl m\n" + good).encode(), "in.mtl": b"newmtl m\nmap_Kd /etc/passwd\n"}
    cases.append(mesh("obj-texture-absolute", obj, "in.obj", app={}, expect=E))
    numbers = [("views-0", "--views", "0", "views", 0),
               ("view-size-huge", "--view-size", "1000000", "view_size", 10**6),
               ("texture-size-huge", "--texture-size", "1000000000", "texture_size", 10**9),
               ("strength-nan", "--strength", "nan", "strength", NAN), ("encoder-path", "--encoder", "../../x",
                                                                        "encoder", "../../x")]
    cases += [mesh(id, cli=[flag, text], app={key: value}) for id, flag, text, key, value in numbers]
    return cases + [mesh("mode-bogus", cli=None, app={"mode": "bogus"}), mesh("output-fbx", out="r.fbx"),
                    mesh("output-missing-folder", out="missing/r.glb")]


def lora_cases() -> list[Case]:
    good = lora()
    rows = [  # name, bytes (or a maker), expect, file: each imported under its case id (a valid name)
        ("pickle-renamed", pickled), ("pickle-ckpt", pickled, "error", "in.ckpt"), ("header-past-end", good[:40]),
        ("header-length-huge", struct.pack("<Q", 2**60) + good[8:]),
        ("header-not-json", safetensors({}, header=b"{this is not json")), ("lora-a-1d", lora(a_shape=(768,))),
        ("mismatched-ranks", lora(b_shape=(320, 8))), ("nan-tensors", lora(fill=np.nan)),
        ("wrong-width", lora(width=1024)), ("huge-header", lora(meta={f"k{i}": "x" * 1000 for i in range(5000)}), E),
        ("zero-bytes", b""), ("text-renamed", b"not a tensor file\n" * 20),
        ("bad-dtype", edited(lambda t: t.update(dtype="X99"))),
        ("offsets-past-end", edited(lambda t: t.update(data_offsets=[9_000_000, 9_012_288]))),
        ("shape-huge", edited(lambda t: t.update(shape=[4_000_000_000_000, 768]))),
        ("no-attention-keys", safetensors({"text_encoder.foo.lora_A.weight": np.zeros((4, 8))})),
        ("valid", good, "ok"), ("valid-kohya", lora(kohya=True), "ok"),
    ]
    cases = [Case(f"lora-{name}", ["lora", "import", F(file), "--name", f"lora-{name}", "--base", "sd15"],
                  ("/lora_import", dict(file=F(file), name=f"lora-{name}", base="sd15", trigger="")), {file: data},
                  expect, ("lora", f"lora-{name}")) for name, data, expect, file in pad(rows, "in.safetensors")]
    imports = lambda id, name, base: Case(f"lora-{id}", ["lora", "import", F("good.safetensors"), "--name", name,
                                                         "--base", base],
                                          ("/lora_import", dict(file=F("good.safetensors"), base=base, trigger="",
                                                                name=name)))
    return cases + [imports("duplicate-name", "keep-me", "sd15"), imports("base-path", "c1", "../../x"),
                    stylize("lora-adain-decoder-pickle", {"d.pth": pickled}, cli=["--method", "adain", "--variant",
                                                                                 "decoder", "--decoder", F("d.pth")])]


NAMES = {"dotdot": "../evil", "slash": "a/b", "absolute": "/tmp/x", "nul": "a\0b", "300-chars": "x" * 300,
         "unicode": "naïve-ünïcödé", "empty": "", "dotdot-only": "..", "newline": "a\nb",
         "trailing-newline": "evil\n"}


def name_cases() -> list[Case]:
    argv = lambda name, *args: None if "\0" in name else list(args)  # argv cannot carry NUL
    good = F("good.safetensors")
    pick = lambda *keys: [(key, NAMES[key]) for key in keys]
    train = dict(files=[F("style.png"), F("content.png")], trigger="", base="sd15", steps=1, rank=4, resolution=64,
                 captions="none")
    return [Case(f"name-import-{k}", argv(n, "lora", "import", good, "--name", n),  # the app trims the name
                 ("/lora_import", dict(file=good, name=n, base="sd15", trigger="")),
                 expect=("error", E) if n.strip() != n else "error",
                 result=("lora", n.strip())) for k, n in NAMES.items()] + [
        Case(f"name-rename-{k}", argv(n, "lora", "rename", "keep-me", n), ("/lora_rename", dict(old="keep-me", new=n)))
        for k, n in pick("dotdot", "slash", "absolute", "empty", "300-chars")] + [
        Case(f"name-delete-{k}", argv(n, "lora", "delete", n), ("/lora_delete", dict(name=n)))
        for k, n in pick("dotdot", "absolute", "nul")] + [
        Case(f"name-export-{k}", argv(n, "lora", "export", n, OUT("x.safetensors")), ("/lora_export", dict(name=n)))
        for k, n in pick("dotdot", "empty")] + [
        Case(f"name-train-{k}", argv(n, "lora", "train", "--images", F("imgs"), "--name", n, "--steps", "1"),
             ("/lora_train", dict(train, name=n)), {"imgs": lambda p: p.mkdir()})
        for k, n in pick("dotdot", "300-chars")
    ] + [Case(f"name-lora-option-{k}", TEXT_CLI + ["--lora", f"{n}:0.5"], ("/text_style", dict(TEXT_FORM, lora_1=n)))
         for k, n in pick("dotdot", "300-chars")]


def number_cases() -> list[Case]:
    rows = [  # id, CLI flags (None: no such flag), app values (None: no such field), expect (CLI, app)
        ("size-negative", ["--size", "-1"], {"size": -1}), ("size-0", ["--size", "0"], {"size": 0}),
        ("size-4097", ["--size", "4097"], {"size": 4097}), ("size-huge", ["--size", str(10**12)], {"size": 10**12}),
        ("size-text", ["--size", "abc"], {"size": "abc"}), ("size-nan", ["--size", "nan"], {"size": NAN}),
        ("steps-negative", ["--steps", "-1"], {"steps": -1}), ("steps-0", ["--steps", "0"], None),
        ("steps-10001", ["--steps", "10001"], {"steps": 10001}),
        ("strength-nan", ["--strength", "nan"], {"strength": NAN}),
        ("strength-inf", ["--strength", "inf"], {"strength": INF}),
        ("style-scale-nan", ["--style-scale", "nan"], {"style_scale": NAN}),
        ("weights-text", ["--style-weights", "abc"], {"weights": "abc"}),
        ("weights-count", ["--style-weights", "1,2"], {"weights": "1, 2"}),
        ("weights-nan", ["--style-weights", "nan"], {"weights": "nan"}),
        ("weights-overflow", ["--style-weights", "1e400"], {"weights": "1e400"}),
        ("seed-negative", ["--seed", "-1"], {"seed": -1}, ("error", "ok")),
        ("seed-2-64", ["--seed", str(2**64)], {"seed": 2**64}),
        ("seed-min-int64", ["--seed", str(-2**63)], {"seed": -2**63}, ("error", E)),
        ("encoder-path", ["--encoder", "../../etc/passwd"], {"encoder": "../../etc/passwd"}),
        ("method-path", ["--method", "../x"], {"method": "../x"}),
        ("preserve-color-bogus", ["--preserve-color", "bogus"], {"preserve_color": "bogus"}),
        ("adain-alpha-nan", ["--method", "adain", "--alpha", "nan"], {"method": "adain", "adain_alpha": NAN}),
        ("adain-layers-bogus", ["--method", "adain", "--layers", "relu9_9,../x"],
         {"method": "adain", "adain_layers": "relu9_9,../x"}),
        ("gram-tv-weight-inf", ["--method", "gram", "--tv-weight", "inf"], {"gram_tv_weight": INF}),
    ]
    cases = [stylize(f"number-{id}", cli=flags, app=values, expect=expect[0] if expect else "error")
             for id, flags, values, *expect in rows]
    return cases + [
        Case("number-prompt-5000-chars", TEXT_CLI[:2] + ["ink " * 1250] + TEXT_CLI[3:],
             ("/text_style", {**TEXT_FORM, "prompt": "ink " * 1250})),
        Case("number-lora-weight-nan", TEXT_CLI + ["--lora", "keep-me:nan"],
             ("/text_style", {**TEXT_FORM, "lora_1": "keep-me", "weight_1": NAN}), raw=True),
        Case("number-texture-size-huge", ["texture", "--style", F("style.png"), *TINY, "--size", "100000", "-o",
                                          OUT("r.png")],
             ("/texture", dict(styles=[F("style.png")], size=100000, steps=2, seed=1, encoder="random")))]


def output_cases() -> list[Case]:
    rows = [("folder", "r.png", {"r.png": lambda p: p.mkdir()}, "error"), ("missing-folder", "no/r.png", {}, "error"),
            ("suffix-txt", "r.txt", {}, "error"), ("suffix-jpg", "r.jpg", {}, E, ("format", "JPEG")),
            ("no-suffix", "result", {}, E, ("format", "PNG")),
            ("symlink-to-previous-result", "link.png", {"link.png": link_to_previous}, "error"),
            ("fifo", "pipe.png", {"pipe.png": lambda p: os.mkfifo(p)}, "error"),
            ("char-device", "full.png", {"full.png": device}, "error"), ("name-300-chars", "x" * 300 + ".png", {},
                                                                           "error")]
    export = ["lora", "export", "keep-me"]
    return [stylize(f"output-{id}", cli=[], out=out, outs=outs, expect=expect, **({"result": r[0]} if r else {}))
            for id, out, outs, expect, *r in rows] + [
        Case("output-export-txt", [*export, OUT("k.txt")], None),
        Case("output-export-folder", [*export, OUT("k.safetensors")], None,
             outs={"k.safetensors": lambda p: p.mkdir()}),
        Case("output-export-proc", [*export, "/proc/nstdiff-cannot-write.safetensors"], None)]


def all_cases() -> list[Case]:
    cases = [c for make in (image_cases, mask_cases, audio_cases, mesh_cases, lora_cases, number_cases, name_cases,
                            output_cases) for c in make()]
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    return cases
