"""Settings: defaults from configs/default.toml, a user config file, environment overrides."""
from __future__ import annotations

import tomllib
from pathlib import Path

from nstdiff.settings import DEFAULT_CONFIG, Settings, reload_settings


def test_shipped_config_is_what_the_code_uses(monkeypatch):
    for key in ("NSTDIFF_CACHE_DIR", "NSTDIFF_OUTPUTS_DIR", "NSTDIFF_ALLOW_DOWNLOADS", "NSTDIFF_DEVICE"):
        monkeypatch.delenv(key, raising=False)
    shipped = tomllib.loads(Path(str(DEFAULT_CONFIG)).read_text())
    settings = reload_settings()
    for key, value in shipped.items():
        current = getattr(settings, key)
        assert str(current) == str(Path(value).expanduser()) if isinstance(current, Path) else current == value


def test_environment_beats_user_config_beats_defaults(tmp_path, monkeypatch):
    config = tmp_path / "mine.toml"
    config.write_text('device = "cuda"\nmax_output_side = 2048\n')
    monkeypatch.delenv("NSTDIFF_DEVICE")
    monkeypatch.setenv("NSTDIFF_CONFIG", str(config))
    monkeypatch.setenv("NSTDIFF_MAX_OUTPUT_SIDE", "1024")
    settings = Settings()
    assert settings.device == "cuda" and settings.max_output_side == 1024


def test_models_folder_defaults_under_the_cache(tmp_path):
    assert Settings(cache_dir=tmp_path).models_path == tmp_path / "models"


def test_hf_offline_turns_downloads_off(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not Settings(allow_downloads=True).downloads_allowed
