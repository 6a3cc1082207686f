"""Audio style transfer on short generated clips (a chord, a noise texture): outputs, losses, pitch, errors, CLI."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import nstdiff
from extensions.audio.audioio import read_clip
from extensions.audio.measures import chroma_similarity, mel_distance
from extensions.audio.method import OUTPUT_PEAK
from extensions.audio.schema import MAX_SECONDS, AudioStyleRequest
from extensions.audio.spectral import RandomFilterBank, SpectralStyleLoss, log_magnitude
from nstdiff.commands import main
from nstdiff.errors import Cancelled, InputError
from tests.conftest import cancel_at

REPO = Path(__file__).resolve().parents[1]
RATE = 22050
SMALL = dict(filters=64, n_fft=512, steps=60)  # seconds of CPU, still a real optimisation


def chord(seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A C-major triad of harmonic tones (5 partials each)."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * k * 440.0 * 2 ** ((note - 69) / 12) * t) / k
               for note in (60, 64, 67) for k in range(1, 6))
    return (0.5 * tone / np.abs(tone).max()).astype(np.float32)


def noise_texture(seconds: float = 1.0, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Bursts of high-passed noise every 50 ms: a crackle with no pitch."""
    rng = np.random.default_rng(seed)
    noise = np.diff(rng.standard_normal(int(seconds * rate) + 1))
    gate = (np.arange(len(noise)) % int(0.05 * rate)) < int(0.02 * rate)
    return (0.5 * noise * (0.2 + gate) / np.abs(noise).max()).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    paths = {"chord": folder / "chord.wav", "noise": folder / "noise.wav"}
    soundfile.write(paths["chord"], chord(), RATE)
    soundfile.write(paths["noise"], noise_texture(), RATE)
    return paths


@pytest.fixture(scope="module")
def rendered(clips):
    return nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=clips["noise"], seed=0, **SMALL))


def test_output_has_the_content_length_and_rate_and_is_peak_normalised(rendered):
    assert rendered.sample_rate == RATE and len(rendered.audio) == RATE  # 1 s in, 1 s out
    assert abs(np.abs(rendered.audio).max() - OUTPUT_PEAK) < 1e-4  # −1 dBFS: loud, never clipped


def test_style_loss_falls_well_below_the_contents_and_the_timbre_moves_to_the_style(rendered):
    assert rendered.losses["style"] < 0.2 * rendered.losses["style_of_content"]
    chord_to_noise = mel_distance(chord(), noise_texture(), RATE)
    assert mel_distance(rendered.audio, noise_texture(), RATE) < 0.7 * chord_to_noise


def test_pitch_is_kept_at_default_strength(rendered):
    assert chroma_similarity(noise_texture(), chord(), RATE) < 0.8  # the measure tells a noise from the chord
    assert chroma_similarity(rendered.audio, chord(), RATE) > 0.9


def test_strength_moves_between_content_and_style(clips):
    runs = {s: nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=clips["noise"], seed=0, strength=s,
                                                 **SMALL)) for s in (0.1, 0.9)}
    assert runs[0.1].losses["content"] < 0.5 * runs[0.9].losses["content"]
    assert runs[0.9].losses["style"] < runs[0.1].losses["style"]


def test_spectrogram_mode_with_griffin_lim(clips):
    result = nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=clips["noise"], seed=0,
                                               mode="spectrogram", **SMALL))
    assert len(result.audio) == RATE and abs(np.abs(result.audio).max() - OUTPUT_PEAK) < 1e-4
    assert result.losses["style"] < result.losses["style_of_content"]  # measured on the reconstructed waveform


def test_a_seed_reproduces_the_output_and_another_seed_differs(clips):
    def run(seed):
        return nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=clips["noise"], seed=seed,
                                                 filters=32, n_fft=512, steps=5)).audio

    assert np.array_equal(run(5), run(5))
    assert not np.allclose(run(5), run(6))
    assert torch.equal(RandomFilterBank(257, 16, 5, seed=3).weight, RandomFilterBank(257, 16, 5, seed=3).weight)


def test_the_effective_content_weight_grows_with_the_filter_count():
    content, style = torch.from_numpy(chord()), torch.from_numpy(noise_texture())
    raw = {n: SpectralStyleLoss(RandomFilterBank(257, n, 5, seed=0), log_magnitude(content, 512),
                                log_magnitude(style, 512), content_weight=1.0).raw_content_weight for n in (64, 256)}
    assert 3.0 < raw[256] / raw[64] < 5.5  # ∝ N: four times the filters, about four times the weight


def test_every_format_rate_and_channel_count_is_read_and_noted(tmp_path):
    stereo = np.stack([chord(0.6, 44100), chord(0.6, 44100)], axis=1)
    content = tmp_path / "content.flac"
    soundfile.write(content, stereo, 44100)
    style = tmp_path / "style.mp3"
    soundfile.write(style, noise_texture(0.3, 16000), 16000)
    result = nstdiff.stylize(AudioStyleRequest(content=content, style=style, seed=0, filters=16, n_fft=512, steps=2))
    assert len(result.audio) == round(0.6 * RATE)
    notes = " | ".join(result.notes)
    for expected in ("content resampled 44100 Hz → 22050 Hz", "content mixed from 2 channels to mono",
                     "style resampled 16000 Hz → 22050 Hz", "style looped"):
        assert expected in notes
    ogg = tmp_path / "content.ogg"
    soundfile.write(ogg, chord(0.5), RATE)
    long_style = tmp_path / "long_style.wav"
    soundfile.write(long_style, noise_texture(2.0), RATE)
    cropped = nstdiff.stylize(AudioStyleRequest(content=ogg, style=long_style, seed=0, filters=16, n_fft=512, steps=1))
    assert len(cropped.audio) == round(0.5 * RATE) and any("style cropped" in n for n in cropped.notes)


def test_saved_files_carry_rate_length_and_parameters(rendered, tmp_path):
    for name, kind in (("out.wav", "WAV"), ("out.flac", "FLAC")):
        path = rendered.save(tmp_path / name)
        with soundfile.SoundFile(path) as saved:
            assert (saved.format, saved.samplerate, saved.frames, saved.channels) == (kind, RATE, RATE, 1)
            assert '"seed": 0' in saved.comment
        assert np.abs(soundfile.read(path)[0]).max() < 1.0
    with pytest.raises(InputError, match=r"out\.mp3': .* written as \.wav, \.flac"):
        rendered.save(tmp_path / "out.mp3")
    (tmp_path / "link.wav").symlink_to(tmp_path / "out.wav")
    with pytest.raises(InputError, match="is a symbolic link"):
        rendered.save(tmp_path / "link.wav")


def write(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str | None = None) -> Path:
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


BAD_CONTENT = {
    "missing": (lambda d: d / "nope.wav", "does not exist"),
    "not audio": (lambda d: (d / "broken.wav").write_bytes(b"RIFF\x00\x00 not a wave") and d / "broken.wav",
                  "not a readable audio file"),
    "NaN samples": (lambda d: write(d / "nan.wav", np.where(np.arange(RATE) == 99, np.nan, chord()), subtype="FLOAT"),
                    "NaN or infinite"),
    "silence": (lambda d: write(d / "silent.wav", np.zeros(RATE, np.float32)), "is silent"),
    "too short": (lambda d: write(d / "short.wav", chord(0.1)), r"0\.10 s long; it needs at least 0\.25 s"),
    "too long": (lambda d: write(d / "long.wav", np.tile(chord(1.0, 8000), int(MAX_SECONDS) + 1), 8000),
                 r"over the limit of 120 s; pass seconds"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_bad_inputs_get_a_clear_error(case, clips, tmp_path):
    make, message = BAD_CONTENT[case]
    with pytest.raises(InputError, match=message):
        nstdiff.stylize(AudioStyleRequest(content=make(tmp_path), style=clips["noise"], filters=16, steps=1))
    if case != "too long":
        with pytest.raises(InputError, match="style clip .*" + message.split(";")[0]):
            nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=make(tmp_path), filters=16, steps=1))
        return
    # a long style is cropped to the content, and a long content can be rendered in part with `seconds`
    cropped = nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=make(tmp_path), filters=16, steps=1))
    assert len(cropped.audio) == RATE
    part = nstdiff.stylize(AudioStyleRequest(content=make(tmp_path), style=clips["noise"], seconds=0.5, filters=16,
                                             n_fft=512, steps=1))
    assert len(part.audio) == RATE // 2 and any("cropped to its first 0.5 s" in n for n in part.notes)


def test_oversized_files_and_out_of_range_settings_are_refused(clips, monkeypatch):
    from nstdiff.settings import reload_settings

    with pytest.raises(InputError, match="n_fft: .*power of two"):
        nstdiff.stylize({"method": "audio", "content": str(clips["chord"]), "style": str(clips["noise"]),
                         "n_fft": 1000})
    with pytest.raises(InputError, match="strength: .*less than or equal to 1"):
        nstdiff.stylize({"method": "audio", "content": str(clips["chord"]), "style": str(clips["noise"]),
                         "strength": 2})
    monkeypatch.setenv("NSTDIFF_MAX_INPUT_BYTES", "1000")
    reload_settings()
    with pytest.raises(InputError, match="content clip 'chord.wav' is .* MiB, over the limit"):
        nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=clips["noise"], steps=1))


def test_cancel_stops_at_the_next_step(clips):
    token, on_progress, _ = cancel_at(3)
    with pytest.raises(Cancelled) as stopped:
        nstdiff.stylize(AudioStyleRequest(content=clips["chord"], style=clips["noise"], filters=16, n_fft=512,
                                          steps=500), progress=on_progress, cancel=token)
    assert (stopped.value.step, stopped.value.total) == (3, 500)


def test_cli_writes_the_clip_and_refuses_other_suffixes(clips, tmp_path, capsys):
    out = tmp_path / "out.wav"
    code = main(["audio", str(clips["chord"]), "--style", str(clips["noise"]), "--strength", "0.6", "--steps", "3",
                 "--seconds", "0.5", "--filters", "16", "--n-fft", "512", "--seed", "1", "--quiet", "-o", str(out)])
    assert code == 0 and f"wrote {out}" in capsys.readouterr().out
    assert soundfile.info(out).frames == RATE // 2 and soundfile.info(out).samplerate == RATE
    code = main(["audio", str(clips["chord"]), "--style", str(clips["noise"]), "-o", str(tmp_path / "out.mp3")])
    assert code == 2 and "written as .wav, .flac" in capsys.readouterr().err
    assert not (tmp_path / "out.mp3").exists()


def test_the_tab_and_request_modules_never_import_torch():
    for name in ("tab.py", "schema.py", "audioio.py", "measures.py"):
        tree = ast.parse((REPO / "extensions" / "audio" / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(str(m).split(".")[0] == "torch" for m in imported), name
    check = "import sys, extensions.audio.tab, extensions.audio.audioio; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO).stdout.strip() \
        == "False"


def test_a_damaged_mp3_gives_our_message_and_nothing_else(tmp_path, capfd, recwarn):
    mp3 = tmp_path / "tone.mp3"
    soundfile.write(mp3, chord(3.0), RATE, format="MP3")
    garbage = write_bytes(tmp_path / "garbage.mp3", mp3.read_bytes()[:2000] + bytes(range(256)) * 40)
    truncated = write_bytes(tmp_path / "cut.mp3", mp3.read_bytes()[: mp3.stat().st_size // 3])
    capfd.readouterr()
    with pytest.raises(InputError, match="content clip 'garbage.mp3' could not be decoded"):
        read_clip(garbage, "content", RATE)
    assert len(read_clip(truncated, "content", RATE).samples) > 0  # decodable: what is there is used
    assert capfd.readouterr().err == ""  # mpg123 printed "Illegal Audio-MPEG-Header", "Xing stream size off"
    assert [str(w.message) for w in recwarn] == []  # librosa's "PySoundFile failed. Trying audioread instead."


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
