"""The app's Audio tab through its real HTTP API (gradio_client): two uploads in, a WAV and spectrograms out."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from gradio_client import handle_file
from PIL import Image

from tests.test_audio import RATE, chord, noise_texture


@pytest.fixture(scope="module")
def client(offline_client):
    return offline_client


def form(content, style, **values):
    return {"content": handle_file(str(content)), "style": handle_file(str(style)), "strength": 0.5,
            "mode": "waveform", "steps": 5, "filters": 16, "kernel_width": 5, "n_fft": 512, "sample_rate": RATE,
            "seconds": 0, "seed": 2, **values}


def test_audio_tab_renders_a_clip_with_spectrograms_and_adds_it_to_the_history(client, tmp_path):
    content, style = tmp_path / "chord.wav", tmp_path / "noise.ogg"
    soundfile.write(content, np.stack([chord(0.5, 44100)] * 2, axis=1), 44100)
    soundfile.write(style, noise_texture(0.3), RATE)
    before = len(client.predict(api_name="/history"))
    audio, content_picture, style_picture, result_picture, info = client.predict(**form(content, style),
                                                                                 api_name="/audio")
    with soundfile.SoundFile(audio) as result:
        assert (result.format, result.samplerate, result.frames) == ("WAV", RATE, RATE // 2)
    for picture in (content_picture, style_picture, result_picture):
        assert Image.open(picture).size == (760, 300)  # large enough to read, with time and frequency axes
    assert "seed **2**" in info and "resampled 44100 Hz → 22050 Hz" in info and "style looped" in info
    history = client.predict(api_name="/history")
    assert len(history) == before + 1 and "audio · random-16 · seed 2" in history[0]["caption"]


def test_a_bad_upload_gets_its_message(client, tmp_path):
    silent, style = tmp_path / "silent.wav", tmp_path / "noise.wav"
    soundfile.write(silent, np.zeros(RATE, np.float32), RATE)
    soundfile.write(style, noise_texture(0.5), RATE)
    with pytest.raises(Exception, match="content clip 'silent.wav' is silent"):
        client.predict(**form(silent, style), api_name="/audio")
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3 not really an mp3")
    with pytest.raises(Exception, match="style clip 'broken.mp3' is not a readable audio file"):
        client.predict(**form(style, broken), api_name="/audio")
    path = client.predict(**form(style, style), api_name="/audio")[0]  # and the server keeps serving
    assert soundfile.info(path).frames == RATE // 2


def test_progress_reaches_the_client_and_cancel_stops_the_audio_job(client, tmp_path):
    import time

    content, style = tmp_path / "chord.wav", tmp_path / "noise.wav"
    soundfile.write(content, chord(0.5), RATE)
    soundfile.write(style, noise_texture(0.5), RATE)
    job = client.submit(**form(content, style, steps=5000), api_name="/audio")
    progress, deadline = None, time.time() + 60
    while progress is None and time.time() < deadline:
        progress = (job.status().progress_data or [None])[0]
        time.sleep(0.05)
    assert progress is not None and progress.length == 5000 and "step" in (progress.desc or "")
    assert client.predict(api_name="/cancel").startswith("Cancelling")
    with pytest.raises(Exception, match="Cancelled at step"):
        job.result(timeout=60)
