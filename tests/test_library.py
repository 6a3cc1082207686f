"""The style library: what ships (public domain by the artist's death year), words matched to it, and a style in
words that runs without a diffusion model (API and CLI), while words still go to diffusion when its model is ready."""
from __future__ import annotations

import datetime
import json
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from nstdiff import ImageStyleRequest, ModelNotFoundError, stylize
from nstdiff.errors import InputError
from nstdiff.library import add_painting, get_painting, list_paintings, match, remove_painting
from nstdiff.library.catalogue import builtin_folder, builtin_paintings, check_painting_id
from nstdiff.settings import Settings, reload_settings

REPO = Path(__file__).resolve().parents[1]
STARRY = "vincent-van-gogh_the-starry-night"
RHONE = "vincent-van-gogh_starry-night-over-the-rhone"
WAVE = "katsushika-hokusai_the-great-wave-off-kanagawa"
# artists in the project's candidate data who died in 1926 or later: not shipped (yet)
TOO_RECENT = ("Monet", "Kandinsky", "Munch", "Mucha", "Picabia", "Malevich", "Mondrian", "Delaunay", "Gris", "Grant Wood")


def metadata(path: Path) -> dict:
    return json.loads(Image.open(path).text["nstdiff"])


# -- what ships --------------------------------------------------------------------------------------------------

def test_every_shipped_painting_is_listed_public_domain_and_small():
    folder = builtin_folder() / "paintings"
    paintings = builtin_paintings()
    files = sorted(p.name for p in folder.glob("*"))
    assert files == sorted(f"{p.id}.jpg" for p in paintings)  # every file listed, every entry has its file
    assert len({p.id for p in paintings}) == len(paintings) >= 20
    limit = min(1925, datetime.date.today().year - 101)  # more than 100 whole calendar years
    for p in paintings:
        assert p.artist_death is not None and p.artist_death <= limit, p.id
        assert p.licence == f"public domain: artist died {p.artist_death}, > 100 years", p.id
        assert not any(name in p.artist for name in TOO_RECENT), p.id
        assert p.title and p.artist and p.year and p.source, p.id
        assert p.movement and p.medium and p.palette and p.mood and p.tags, p.id  # every kind of tag
        with Image.open(p.path) as image:
            assert image.format == "JPEG" and max(image.size) <= 768, p.id
    total = sum(f.stat().st_size for f in folder.glob("*.jpg"))
    assert total <= 4 * 2**20, total
    # shipped as package data
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "nstdiff.library" in project["tool"]["setuptools"]["packages"]
    assert {"catalogue.toml", "vocabulary.toml", "paintings/*.jpg"} <= set(
        project["tool"]["setuptools"]["package-data"]["nstdiff.library"])
    assert any(d.startswith("rapidfuzz") for d in project["project"]["dependencies"])


# -- matching -----------------------------------------------------------------------------------------------------

def test_words_find_the_painting_and_say_why():
    best, *others = match("Van Gogh starry swirls")
    assert best.painting.id == STARRY and best.painting.artist == "Vincent van Gogh"
    assert "artist 'van gogh'" in best.why and "'starry'" in best.why and "'swirls'" in best.why
    assert others[0].painting.id == RHONE and len(others) == 2
    assert match("ukiyo-e woodblock")[0].painting.id == WAVE
    assert match("Ukiyoe print")[0].painting.id == WAVE  # spelt without the hyphen
    assert match("impressionist ballet dancers")[0].painting.id == "edgar-degas_the-dance-foyer-at-the-opera"
    assert match("Cézanne apples")[0].painting.id == "paul-cezanne_the-basket-of-apples"
    assert match("stormy sea, Turner")[0].painting.id == "j-m-w-turner_the-shipwreck"
    assert match("pointillism")[0].painting.artist == "Georges Seurat"


def test_a_preset_name_brings_its_vocabulary_and_every_preset_finds_a_painting():
    from nstdiff.diffusion.presets import load_presets
    from nstdiff.library.matching import preset_vocabulary

    cyberpunk = match("cyberpunk")[0]  # no painting is tagged cyberpunk: the preset's words (night, city) decide
    assert "night" in cyberpunk.why and "via the preset cyberpunk" in cyberpunk.why
    presets = load_presets()
    assert set(preset_vocabulary()) == set(presets)  # every preset mapped, no stale names
    for preset in presets.values():
        found = match(f"{preset.name} {preset.title}", k=1, fill=False)
        assert found and found[0].score > 0, preset.name


def test_nonsense_words_match_nothing_and_the_run_says_what_to_try(images):
    assert match("xyzzy plugh qwv") == []
    with pytest.raises(InputError, match=r"no painting in the style library matches 'xyzzy plugh qwv'.*Van Gogh.*"
                                         r"Words go to the style library here because no diffusion model"):
        stylize(ImageStyleRequest(content=images["content"], prompt="xyzzy plugh qwv", size=32))


def test_one_match_is_topped_up_with_the_closest_in_look():
    found = match("Mona Lisa")
    assert found[0].painting.id == "leonardo-da-vinci_mona-lisa" and len(found) == 3
    assert all(m.score == 0 and "closest in look to 'Mona Lisa'" in m.why for m in found[1:])
    assert match("Mona Lisa", fill=False)[1:] == []


# -- your own paintings -------------------------------------------------------------------------------------------

def test_your_own_painting_is_listed_matched_by_its_tags_and_removable(images, tmp_path, isolated_settings):
    painting = add_painting(images["red"], "Red Stripes", "Me", "crimson, zigzag", year="2026")
    assert painting.id == "red-stripes" and not painting.builtin
    assert painting.path.parent == isolated_settings.models_path / "styles" and painting.path.suffix == ".jpg"
    assert Image.open(painting.path).format == "JPEG"  # our own re-encoding, not the uploaded file
    assert [p.id for p in list_paintings()][-1] == "red-stripes"
    found = match("crimson zigzag")[0]
    assert found.painting.id == "red-stripes" and "tags 'crimson', 'zigzag'" in found.why
    with pytest.raises(InputError, match="already in the style library"):
        add_painting(images["blue"], "Red stripes!")
    text = tmp_path / "fake.jpg"
    text.write_text("not a picture")
    with pytest.raises(InputError, match="style image .*fake.jpg"):
        add_painting(text, "Fake")
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(InputError, match="not a usable painting name"):
            check_painting_id(bad)
    with pytest.raises(InputError, match="ships with nstdiff"):
        remove_painting(STARRY)
    remove_painting("red-stripes")
    assert "red-stripes" not in {p.id for p in list_paintings()}
    with pytest.raises(InputError, match="no painting 'red-stripes'"):
        get_painting("red-stripes")


# -- a style in words without a diffusion model ----------------------------------------------------------------------

def test_offline_words_run_the_classic_path_and_name_the_painting(random_magenta, images, tmp_path):
    result = stylize(ImageStyleRequest(content=images["content"], prompt="Van Gogh starry swirls", size=32,
                                       quality="fast", seed=0))
    assert result.method == "feedforward" and result.image.size == (32, 27)
    assert "words were matched to the style library because no diffusion model: sd15 is not downloaded" in \
        result.notes[0]
    assert result.notes[1].startswith("style library: 'The Starry Night' — Vincent van Gogh, 1889 for 'Van Gogh "
                                      "starry swirls'")
    assert f"library id {RHONE}" in result.notes[1]  # the runner-up, one flag away
    library = result.parameters["library"]
    assert library["painting"]["id"] == STARRY and [a["id"] for a in library["alternatives"]][0] == RHONE
    assert Path(result.parameters["styles"][0]["image"]).name == f"{STARRY}.jpg"
    assert result.parameters["prompt"] is None  # the words went to the matcher, not to a method that ignores them
    saved = metadata(result.save(tmp_path / "out.png"))
    assert saved["parameters"]["library"]["painting"]["title"] == "The Starry Night"
    assert any("The Starry Night" in note for note in saved["notes"])
    # the runner-up by name: its painting, and the first choice becomes a runner-up
    again = stylize(ImageStyleRequest(content=images["content"], prompt="Van Gogh starry swirls", size=32,
                                      quality="fast", seed=0, options={"library": RHONE}))
    assert again.parameters["library"]["painting"]["id"] == RHONE and "chosen by name" in again.notes[1]
    assert STARRY in [a["id"] for a in again.parameters["library"]["alternatives"]]
    assert again.image.tobytes() != result.image.tobytes()


def test_offline_words_without_the_feed_forward_weights_run_gram_and_without_a_photo_grow_a_texture(images):
    result = stylize(ImageStyleRequest(content=images["content"], prompt="ukiyo-e woodblock", size=32, steps=2,
                                       encoder="random", seed=0,
                                       options={"negative_prompt": "blurry", "structure": "canny", "fast": True}))
    assert result.method == "gram" and result.parameters["library"]["painting"]["id"] == WAVE
    assert "the feed-forward weights are not on disk" in result.notes[0]
    assert "not used without diffusion: fast, negative_prompt, structure" in result.notes[1]
    texture = stylize(ImageStyleRequest(prompt="pointillism", size=32, steps=2, encoder="random", seed=0))
    assert texture.method == "gram" and texture.image.size == (32, 32)
    assert "a texture grown from the painting" in texture.notes[0]
    assert texture.parameters["library"]["painting"]["artist"] == "Georges Seurat"
    with pytest.raises(InputError, match="your LoRAs need diffusion-text, which cannot run here"):
        stylize(ImageStyleRequest(content=images["content"], prompt="ink", size=32, options={"loras": ["ink:0.5"]}))


def test_offline_auto_never_downloads_a_diffusion_model(images, monkeypatch, random_magenta):
    """Downloads allowed but no diffusion model on disk: words go to the library, nothing is fetched from the Hub."""
    import huggingface_hub

    def no_downloads(repo, allow_patterns=None, local_files_only=False, local_dir=None):
        assert local_files_only, f"{repo} was downloaded"
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_downloads)
    monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", "1")
    reload_settings()
    result = stylize(ImageStyleRequest(content=images["content"], prompt="Van Gogh wheat field cypresses", size=32,
                                       quality="fast"))
    assert result.parameters["library"]["painting"]["id"] == "vincent-van-gogh_wheat-field-with-cypresses"


def test_words_still_go_to_diffusion_when_its_model_is_ready(models, images):
    result = stylize(ImageStyleRequest(content=images["content"], prompt="Van Gogh starry swirls", size=64, steps=2,
                                       seed=0))
    assert result.method == "diffusion-text" and "library" not in result.parameters
    assert result.parameters["prompt"] == "Van Gogh starry swirls"
    # a painting named outright still runs with it
    chosen = stylize(ImageStyleRequest(content=images["content"], size=32, steps=2, encoder="random", seed=0,
                                       options={"library": WAVE}))
    assert chosen.method == "gram" and chosen.parameters["library"]["painting"]["id"] == WAVE


def test_explicit_diffusion_text_fails_with_our_one_line_message(images, monkeypatch):
    with pytest.raises(ModelNotFoundError, match=r"nstdiff models fetch sd15") as offline:
        stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="x", size=64))
    assert "\n" not in str(offline.value)
    # downloads allowed, the Hub unreachable: huggingface_hub's several-line error becomes one line of ours
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(repo, allow_patterns=None, local_files_only=False, local_dir=None):
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub\nand we cannot "
                                      "find the requested files in the local cache.\nConnectError: [Errno -3]")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.setenv("NSTDIFF_ALLOW_DOWNLOADS", "1")
    reload_settings()
    with pytest.raises(ModelNotFoundError) as failed:
        stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="x", size=64))
    message = str(failed.value)
    assert "\n" not in message and "LocalEntryNotFoundError" not in message and "ConnectError" not in message
    assert "download failed: no connection to the Hugging Face Hub" in message
    assert "nstdiff models fetch sd15" in message


def test_hub_failures_are_worded_by_kind():
    import httpx
    from huggingface_hub import errors

    from nstdiff.models.diffusion_hub import hub_failure

    response = httpx.Response(401, request=httpx.Request("GET", "https://huggingface.co"))
    assert "gated" in hub_failure(errors.GatedRepoError("gated\nmore", response=response))
    assert "no such repository" in hub_failure(errors.RepositoryNotFoundError("x", response=response))
    assert hub_failure(httpx.ConnectError("[Errno -3] Temporary failure")).startswith("no connection")
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = httpx.ConnectTimeout("slow")
    assert hub_failure(wrapped).startswith("no connection")
    assert hub_failure(errors.HfHubHTTPError("boom", response=httpx.Response(
        503, request=httpx.Request("GET", "https://huggingface.co")))) == "the Hugging Face Hub answered HTTP 503"
    assert hub_failure(ValueError("first line\nsecond line")) == "ValueError: first line"


def test_readiness_names_the_missing_model_its_size_and_the_gpu(isolated_settings, models):
    from nstdiff.diffusion.readiness import readiness

    offline = Settings(cache_dir=isolated_settings.cache_dir, models_dir=isolated_settings.cache_dir / "none",
                       allow_downloads=False, device="cpu")
    text = readiness("text", "sd15", offline)
    assert not text.ready and [p.name for p in text.missing] == ["sd15"] and text.missing[0].size_mb == 4267
    assert "Stable Diffusion 1.5 (`sd15`): not on this machine** (about 4.3 GB to download)" in text.banner()
    assert "needs a GPU to be practical" in text.banner() and "(`sd15`, 4.3 GB)" in text.message()
    assert "matched to a painting of the style library" in text.banner() and "downloads are off" in text.banner()
    reference = readiness("reference", "sd15", offline)
    assert "sd15-ip-adapter" in reference.message() and reference.message().startswith("Style reference needs")
    assert "no IP-Adapter" in readiness("reference", "sd-turbo", offline).message()
    ready = readiness("text", "sd15", reload_settings())  # the tiny models folder
    assert ready.ready and "no GPU here" in ready.banner()


# -- command line ----------------------------------------------------------------------------------------------

def test_cli_offline_words_and_the_library_commands(random_magenta, images, tmp_path, capsys):
    from nstdiff.commands import main

    out = tmp_path / "out.png"
    assert main(["stylize", str(images["content"]), "--prompt", "Van Gogh starry swirls", "--quality", "fast",
                 "--size", "32", "-o", str(out)]) == 0
    saved = metadata(out)
    assert saved["parameters"]["library"]["painting"]["id"] == STARRY
    assert "note: style library: 'The Starry Night'" in capsys.readouterr().err
    assert main(["stylize", str(images["content"]), "--library", RHONE, "--quality", "fast", "--size", "32", "-o",
                 str(out)]) == 0
    assert metadata(out)["parameters"]["library"]["painting"]["id"] == RHONE
    capsys.readouterr()
    assert main(["library", "match", "ukiyo-e woodblock", "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1. 'The Great Wave off Kanagawa' — Katsushika Hokusai")
    assert main(["library", "match", "xyzzy plugh"]) == 2
    assert "no painting in the style library matches" in capsys.readouterr().err
    assert main(["library", "add", str(images["blue"]), "--title", "Blue Lines", "--tags", "cobalt, stripes"]) == 0
    assert "added blue-lines" in capsys.readouterr().out
    assert main(["library", "list"]) == 0
    listing = capsys.readouterr().out
    assert STARRY in listing and "blue-lines" in listing and "(1 your own)" in listing
    assert main(["library", "match", "cobalt stripes", "-k", "1"]) == 0
    assert "[blue-lines]" in capsys.readouterr().out
    assert main(["library", "remove", "blue-lines"]) == 0
    assert main(["library", "remove", STARRY]) == 2


def test_preset_thumbnails_are_rendered_once_and_cached(random_magenta, isolated_settings):
    from nstdiff.diffusion.presets import load_presets
    from nstdiff.library.previews import preset_previews

    presets = [load_presets()[name] for name in ("ukiyo-e", "pointillism")]
    first = preset_previews(presets, isolated_settings)
    assert [p.painting.id for p in first] == [WAVE, "georges-seurat_a-sunday-on-la-grande-jatte"]
    assert all(p.rendered and p.picture.parent == isolated_settings.cache_dir / "library" / "presets" for p in first)
    assert max(Image.open(first[0].picture).size) == 160
    stamps = [p.picture.stat().st_mtime_ns for p in first]
    again = preset_previews(presets, isolated_settings)
    assert [p.picture.stat().st_mtime_ns for p in again] == stamps  # cached, not rendered again


def test_preset_thumbnails_without_the_network_show_the_painting(isolated_settings):
    from nstdiff.diffusion.presets import load_presets
    from nstdiff.library.previews import preset_previews

    (preview,) = preset_previews([load_presets()["ukiyo-e"]], isolated_settings)
    assert not preview.rendered and preview.painting.id == WAVE and preview.picture.suffix == ".jpg"
