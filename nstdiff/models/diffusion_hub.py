"""Where diffusion models come from: a local folder → `<models_dir>/diffusion/<name>` → the Hugging Face cache → a
download (only when allowed). Every catalogue part is also a registered model, so `nstdiff models list|fetch` and
the app's Models tab handle them like the encoders.

A part is ready only when every weight file a load opens is there, in one precision variant (`diffusion_files`): the
plain files ("fp32") or diffusers' `.fp16.` files, which are fetched on CUDA in fp16 (half the download) and loaded
with `variant="fp16"`. Only safetensors weights are ever fetched or loaded. Parts that two families share (SDXL's and
SDXL-Turbo's IP-Adapter) are stored once.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from nstdiff.errors import ModelFileError, ModelNotFoundError
from nstdiff.models.diffusion_catalogue import Variant, load_catalogue
from nstdiff.models.diffusion_files import CONFIG_FILES, TRANSFORMERS_WEIGHTS, Part
from nstdiff.models.resolver import Message, ModelEntry, fetch_model, model_file, model_status, register_model
from nstdiff.settings import Settings, get_settings

FOLDER = "diffusion"


def preferred_variant(part: Part, settings: Settings) -> Variant:
    """fp16 where the models will run in fp16 (CUDA, or asked for) and the repository has it; else its plain files."""
    fp16 = settings.diffusion_dtype == "fp16"
    if settings.diffusion_dtype == "auto":
        import torch

        fp16 = settings.device.startswith("cuda") or (settings.device == "auto" and torch.cuda.is_available())
    want: Variant = "fp16" if fp16 else "fp32"
    return want if want in part.variants else part.variants[0]


def hub_failure(exc: BaseException) -> str:
    """One line saying why a Hugging Face Hub call failed (its own messages run to several lines and name internals,
    e.g. `LocalEntryNotFoundError … ConnectError`)."""
    from huggingface_hub import errors

    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    if any(isinstance(e, errors.GatedRepoError) for e in chain):
        return "the repository is gated: accept its licence on huggingface.co and log in (`hf auth login`)"
    if any(isinstance(e, errors.RepositoryNotFoundError) for e in chain):
        return "no such repository on the Hugging Face Hub (or it is private)"
    if any(isinstance(e, errors.OfflineModeIsEnabled) for e in chain):
        return "HF_HUB_OFFLINE is set, so nothing is downloaded"
    if any(isinstance(e, (errors.LocalEntryNotFoundError, ConnectionError, TimeoutError)) for e in chain) or \
            names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError", "ProxyError",
                      "ConnectionError"}:
        return "no connection to the Hugging Face Hub (offline, or it cannot be reached)"
    status = next((getattr(getattr(e, "response", None), "status_code", None) for e in chain
                   if isinstance(e, errors.HfHubHTTPError)), None)
    if status is not None:
        return f"the Hugging Face Hub answered HTTP {status}"
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _download(repo: str, name: str, **arguments) -> Path:
    """`snapshot_download`, its failures turned into our one-line `ModelNotFoundError`."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, **arguments))
    except Exception as exc:  # network, hub and disk failures alike: say which, not how the hub words it
        fix = (f"run `nstdiff models fetch {name}` when online, or copy the model from a machine that has it "
               f"(`nstdiff models fetch {name} --from FOLDER`)" if name in _PARTS else
               "try again when online, or pass a local folder")
        raise ModelNotFoundError(name, [f"Hugging Face Hub ({repo})"], fix,
                                 reason=f"download failed: {hub_failure(exc)}") from None


def _fetcher(part: Part, name: str):
    def fetch(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
        variant = preferred_variant(part, settings)
        if source is not None:  # a copy made on a machine with internet
            shutil.copytree(source, destination)
        else:
            message(f"downloading {part.repo} ({variant}) from the Hugging Face Hub…")
            _download(part.repo, name, local_dir=destination, allow_patterns=part.patterns(variant))
        if part.variant_in(destination, variant) is None:
            raise ModelFileError(f"{source or part.repo} lacks {', '.join(part.missing(destination, variant))}; it "
                                 "is not the model nstdiff expects")

    return fetch


_PARTS: dict[str, Part] = {}  # part name → what it needs


def _register(name: str, part: Part, description: str) -> None:
    # a part another family registered already (same repository and files) is stored in that one's folder
    stored = next((other for other, known in _PARTS.items() if known == part), name)
    _PARTS[name] = part
    sizes = load_catalogue().repos.get(part.repo, {})
    if "fp16" in sizes and len(sizes) > 1:
        description += f" ({sizes['fp16']:.0f} MB as fp16 on a GPU)"
    register_model(ModelEntry(name, "diffusion", description, stored, _fetcher(part, name), source=part.repo,
                              size_mb=sizes.get("fp32", sizes.get("fp16", 0.0)), folder=FOLDER,
                              complete=part.complete))


def _register_catalogue() -> None:
    catalogue = load_catalogue()

    def part(repo: str, weights: tuple[str, ...] | None, configs: tuple[str, ...] = CONFIG_FILES) -> Part:
        return Part(repo, weights, configs, catalogue.variants(repo))

    for family in catalogue.families.values():
        _register(family.name, part(family.base, None), f"{family.title} (base)")
        if family.ip_adapter:
            spec = family.ip_adapter
            _register(f"{family.name}-ip-adapter",
                      part(spec.repo, (f"{spec.subfolder}/{spec.weight_name}", f"{spec.image_encoder}/model.safetensors"),
                           (f"{spec.image_encoder}/config.json",)),
                      f"IP-Adapter + image encoder for {family.title}")
        for kind, repo in family.controlnet.items():
            _register(f"{family.name}-controlnet-{kind}", part(repo, ("diffusion_pytorch_model.safetensors",),
                                                                ("config.json",)),
                      f"ControlNet ({kind}) for {family.title}")
        if family.lcm_lora:
            _register(f"{family.name}-lcm-lora", part(family.lcm_lora.repo, (family.lcm_lora.weight_name,), ()),
                      f"LCM-LoRA (fast mode) for {family.title}")
        if family.vae_fp16:
            _register(f"{family.name}-vae-fp16", part(family.vae_fp16, ("diffusion_pytorch_model.safetensors",),
                                                      ("config.json",)),
                      f"fp16-safe VAE for {family.title}")
    for kind, repo in catalogue.estimators.items():
        _register(f"{kind}-estimator", part(repo, TRANSFORMERS_WEIGHTS), f"{kind} estimator for structure guidance")
    for name, repo in catalogue.segmenters.items():
        _register(name, part(repo, TRANSFORMERS_WEIGHTS), "text-prompted segmentation: masks from words")


_register_catalogue()


def catalogue_part(name: str) -> Part:
    return _PARTS[name]


def _hf_cached(part: Part, prefer: Variant) -> Path | None:
    """The Hugging Face cache's snapshot of `part.repo`, if it holds every file of one variant."""
    from huggingface_hub import snapshot_download

    for variant in sorted(part.variants or ("fp32",), key=lambda v: v != prefer):
        try:
            folder = Path(snapshot_download(part.repo, allow_patterns=part.patterns(variant), local_files_only=True))
        except Exception:  # not cached (or no such repo in the cache): the caller searches on
            continue
        if part.variant_in(folder, variant) is not None:
            return folder
    return None


def locally_available(name: str, settings: Settings | None = None) -> bool:
    """A catalogue part is on disk, complete (models folder or HF cache): using it needs no download."""
    settings = settings or get_settings()
    if model_status(name, settings).ready:
        return True
    part = _PARTS[name]
    return _hf_cached(part, preferred_variant(part, settings)) is not None


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
                 weights: tuple[str, ...] | None = None) -> Path:
    """A local folder for `ref`: a folder path, a catalogue part name (`sd15`, `sdxl-ip-adapter`) or a Hugging Face
    repo id (`owner/name`: a diffusers pipeline, or the model whose `weights` are given, e.g. TRANSFORMERS_WEIGHTS);
    fetched only when downloads are allowed."""
    settings = settings or get_settings()
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return folder
    searched: list[Path | str] = []
    if ref in _PARTS:
        part = _PARTS[ref]
        local = model_file(ref, settings)
        if model_status(ref, settings).ready:
            return local
        searched.append(local)
    elif _is_repo_id(ref):
        part = Part(ref, weights, variants=("fp32", "fp16"))  # an unknown repository may have either
        searched.append(folder)
    else:
        raise ModelNotFoundError(ref, [folder], f"give a model family ({', '.join(load_catalogue().families)}), a "
                                 "Hugging Face repo id like owner/name, or an existing local folder",
                                 reason="not a folder, family or repo id")
    variant = preferred_variant(part, settings)
    cached = _hf_cached(part, variant)
    if cached is not None:
        return cached
    searched.append(f"Hugging Face cache ({part.repo}, complete)")
    if settings.downloads_allowed:
        if ref in _PARTS:
            return fetch_model(ref, settings=settings, message=message)
        (message or print)(f"downloading {part.repo} from the Hugging Face Hub…")
        return _download(part.repo, ref, allow_patterns=part.patterns(variant))
    fix = (f"run `nstdiff models fetch {ref}` on a machine with internet (or allow downloads: "
           "NSTDIFF_ALLOW_DOWNLOADS=1, HF_HUB_OFFLINE unset), or pass a local folder" if ref in _PARTS else
           "allow downloads (NSTDIFF_ALLOW_DOWNLOADS=1, HF_HUB_OFFLINE unset) or pass a local folder")
    raise ModelNotFoundError(ref, searched, fix, reason="downloads are disabled" if not
                             settings.downloads_allowed else "")


def require(ref: str, settings: Settings | None = None) -> None:
    """Check, without loading or downloading anything, that `ref` (a folder, part name or repo id) can be had: on
    disk, or fetchable now. Raises the `ModelNotFoundError` that resolving it would raise."""
    settings = settings or get_settings()
    if Path(ref).expanduser().is_dir() or settings.downloads_allowed:
        return
    if ref in _PARTS:
        if not locally_available(ref, settings):
            resolve_repo(ref, settings)  # raises, naming the places searched and the fetch command
    elif not _is_repo_id(ref) or _hf_cached(Part(ref, None, variants=("fp32", "fp16")), "fp32") is None:
        resolve_repo(ref, settings)
