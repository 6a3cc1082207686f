"""Where diffusion models come from: a local folder → `<models_dir>/diffusion/<name>` → the Hugging Face cache → a
download (only when allowed). Every catalogue part is also a registered model, so `nstdiff models list|fetch` and
the app's Models tab handle them like the encoders. Only safetensors weights are ever loaded.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from nstdiff.diffusion.catalogue import load_catalogue
from nstdiff.errors import ModelFileError, ModelNotFoundError
from nstdiff.models.resolver import Message, ModelEntry, fetch_model, model_file, model_status, register_model
from nstdiff.settings import Settings, get_settings

FOLDER = "diffusion"
PIPELINE_FILES = ["model_index.json", "*.json", "*.txt", "unet/diffusion_pytorch_model.safetensors",
                  "vae/diffusion_pytorch_model.safetensors", "text_encoder*/model.safetensors"]
MODEL_FILES = ["*.json", "diffusion_pytorch_model.safetensors", "model.safetensors"]


def _fetcher(repo: str, patterns: list[str], marker: str):
    def fetch(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
        if source is not None:  # a copy made on a machine with internet
            shutil.copytree(source, destination)
        else:
            from huggingface_hub import snapshot_download

            message(f"downloading {repo} from the Hugging Face Hub…")
            snapshot_download(repo, local_dir=destination, allow_patterns=patterns)
        if not (destination / marker).is_file():
            raise ModelFileError(f"{source or repo} has no {marker}; it is not the model nstdiff expects")

    return fetch


_PARTS: dict[str, tuple[str, list[str], str]] = {}  # name → (repo, files, marker)


def _register(name: str, repo: str, patterns: list[str], marker: str, description: str, size_mb: float) -> None:
    _PARTS[name] = (repo, patterns, marker)
    register_model(ModelEntry(name, "diffusion", description, name, _fetcher(repo, patterns, marker), source=repo,
                              size_mb=size_mb, folder=FOLDER, marker=marker))


def _register_catalogue() -> None:
    catalogue = load_catalogue()
    for family in catalogue.families.values():
        _register(family.name, family.base, PIPELINE_FILES, "model_index.json", f"{family.title} (base)",
                  7000 if family.architecture == "sdxl" else 2600)
        if family.ip_adapter:
            spec = family.ip_adapter
            _register(f"{family.name}-ip-adapter", spec.repo, [f"{spec.subfolder}/{spec.weight_name}",
                      f"{spec.image_encoder}/*"], f"{spec.subfolder}/{spec.weight_name}",
                      f"IP-Adapter + image encoder for {family.title}", 2600)
        for kind, repo in family.controlnet.items():
            _register(f"{family.name}-controlnet-{kind}", repo, MODEL_FILES, "config.json",
                      f"ControlNet ({kind}) for {family.title}", 1400 if family.architecture == "sd" else 2500)
        if family.lcm_lora:
            _register(f"{family.name}-lcm-lora", family.lcm_lora.repo, [family.lcm_lora.weight_name],
                      family.lcm_lora.weight_name, f"LCM-LoRA (fast mode) for {family.title}", 200)
    for kind, repo in catalogue.estimators.items():
        _register(f"{kind}-estimator", repo, MODEL_FILES, "config.json", f"{kind} estimator for structure guidance",
                  500)


_register_catalogue()


def _hf_cached(repo: str, patterns: list[str], marker: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not cached (or no such repo in the cache): the caller searches on
        return None
    return folder if (folder / marker).is_file() else None


def locally_available(name: str, settings: Settings | None = None) -> bool:
    """A catalogue part is on disk (models folder or HF cache): using it needs no download."""
    if model_status(name, settings).ready:
        return True
    repo, patterns, marker = _PARTS[name]
    return _hf_cached(repo, patterns, marker) is not None


def _is_repo_id(ref: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if ref.count("/") != 1 or ref.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(ref)
    except HFValidationError:
        return False
    return True


def resolve_repo(ref: str, settings: Settings | None = None, message: Message | None = None,
                 files: list[str] | None = None, marker: str = "model_index.json") -> Path:
    """A local folder for `ref`: a folder path, a catalogue part name (`sd15`, `sdxl-ip-adapter`) or a Hugging Face
    repo id (`owner/name`; `files` and `marker` say what of it is needed: a diffusers pipeline by default, e.g.
    MODEL_FILES and "config.json" for a transformers model); fetched only when downloads are allowed."""
    settings = settings or get_settings()
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return folder
    searched: list[Path | str] = []
    if ref in _PARTS:
        repo, patterns, marker = _PARTS[ref]
        local = model_file(ref, settings)
        if model_status(ref, settings).ready:
            return local
        searched.append(local)
    elif _is_repo_id(ref):
        repo, patterns = ref, files or PIPELINE_FILES
        searched.append(folder)
    else:
        raise ModelNotFoundError(ref, [folder], f"give a model family ({', '.join(load_catalogue().families)}), a "
                                 "Hugging Face repo id like owner/name, or an existing local folder",
                                 reason="not a folder, family or repo id")
    cached = _hf_cached(repo, patterns, marker)
    if cached is not None:
        return cached
    searched.append(f"Hugging Face cache ({repo})")
    if settings.downloads_allowed:
        if ref in _PARTS:
            return fetch_model(ref, settings=settings, message=message)
        from huggingface_hub import snapshot_download

        (message or print)(f"downloading {repo} from the Hugging Face Hub…")
        return Path(snapshot_download(repo, allow_patterns=patterns))
    fix = (f"run `nstdiff models fetch {ref}` on a machine with internet (or allow downloads: "
           "NSTDIFF_ALLOW_DOWNLOADS=1, HF_HUB_OFFLINE unset), or pass a local folder" if ref in _PARTS else
           "allow downloads (NSTDIFF_ALLOW_DOWNLOADS=1, HF_HUB_OFFLINE unset) or pass a local folder")
    raise ModelNotFoundError(ref, searched, fix, reason="downloads are disabled" if not
                             settings.downloads_allowed else "")


def check_pipeline_folder(folder: Path) -> str:
    """Check a diffusers pipeline folder has every part its `model_index.json` names; return the pipeline class."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelFileError(f"'{folder}' is not a diffusers pipeline folder: it has no model_index.json")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"'{index_path}' is not valid JSON ({exc}); fetch the model again") from None
    optional = {"safety_checker", "feature_extractor", "image_encoder"}  # not used by nstdiff
    for part, spec in index.items():
        if part.startswith("_") or part in optional or not isinstance(spec, list) or None in spec:
            continue
        if not (folder / part).is_dir():
            raise ModelFileError(f"'{folder}' is missing its '{part}' folder ({spec[1]}); fetch the model again or "
                                 "point --model at a complete folder")
    return str(index.get("_class_name", ""))
