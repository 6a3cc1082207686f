"""Whether a diffusion feature can run here before anyone presses Run: which catalogue parts it needs, which are not
on disk, how much they are to download, whether downloads are allowed and whether there is a GPU. The app's tabs
show it at their top and their Run buttons explain with it; nothing here loads or downloads a model (no torch at
import).
"""
from __future__ import annotations

from dataclasses import dataclass

from nstdiff.settings import Settings, get_settings

FEATURES = {"text": "Text style", "reference": "Style reference", "lora": "Training a LoRA",
            "chain": "Chain (a classic result refined by diffusion)"}
# what a feature does without its model, for the banner
WITHOUT = {"text": "Until then, words typed as a style are matched to a painting of the style library and run with "
                   "the classic methods (no diffusion model needed).",
           "reference": "Until then, the Image style tab takes a style picture with the classic methods (no "
                        "diffusion model needed).",
           "lora": "The fast style networks below need no diffusion model.",
           "chain": "Until then, Gram or AdaIN alone (or auto) restyle without it."}


@dataclass(frozen=True)
class PartState:
    name: str  # catalogue part, e.g. sd15, sd15-ip-adapter
    title: str
    size_mb: float  # to download, in the precision this machine would fetch
    ready: bool


def size_text(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


@dataclass(frozen=True)
class Readiness:
    feature: str  # a key of FEATURES
    family: str
    parts: tuple[PartState, ...]
    gpu: bool
    downloads: bool
    problem: str = ""  # the family cannot do this at all

    @property
    def ready(self) -> bool:
        return not self.problem and all(part.ready for part in self.parts)

    @property
    def missing(self) -> list[PartState]:
        return [part for part in self.parts if not part.ready]

    @property
    def download_mb(self) -> float:
        return sum(part.size_mb for part in self.missing)

    def what_is_missing(self, sizes: bool = True) -> str:
        return " and ".join(f"{part.title} (`{part.name}`" + (f", {size_text(part.size_mb)})" if sizes else ")")
                            for part in self.missing)

    def how_to_fetch(self) -> str:
        names = " ".join(part.name for part in self.missing)
        if self.downloads:
            return f"press Fetch at the top of the tab, or run `nstdiff models fetch {names}`"
        return (f"downloads are off here (NSTDIFF_ALLOW_DOWNLOADS=0 or HF_HUB_OFFLINE=1): run `nstdiff models fetch "
                f"{names}` where they are allowed, or copy the models in with `--from`")

    def message(self) -> str:
        """One line for a Run button that cannot run: what is missing and what to do."""
        if self.problem:
            return f"{FEATURES[self.feature]}: {self.problem}"
        return (f"{FEATURES[self.feature]} needs {self.what_is_missing()}, not on this machine: "
                f"{self.how_to_fetch()}.")

    def banner(self) -> str:
        """Markdown for the top of a tab; empty when the feature is ready and a GPU is here."""
        gpu = "" if self.gpu else " It needs a GPU to be practical; this machine has none."
        if self.problem:
            return f"⚠️ **{self.problem}**"
        if self.ready:
            return "" if self.gpu else ("ℹ️ The diffusion model is on disk, but there is no GPU here: a run takes "
                                        "minutes on the CPU.")
        text = (f"⚠️ **{FEATURES[self.feature]} needs {self.what_is_missing(len(self.missing) > 1)}: not on this "
                "machine** "
                f"(about {size_text(self.download_mb)} to download).{gpu} {WITHOUT[self.feature]}")
        if not self.downloads:
            text += f"  \nTo fetch it: {self.how_to_fetch()}."
        return text


def has_gpu(settings: Settings) -> bool:
    from nstdiff.errors import InputError
    from nstdiff.context import pick_device

    try:
        return pick_device(settings.device).type == "cuda"
    except InputError:  # a device setting naming a GPU that is not there
        return False


def readiness(feature: str, family: str, settings: Settings | None = None) -> Readiness:
    """What `feature` (text, reference, lora, chain) needs of model family `family` here, and whether it is on disk."""
    from nstdiff.models.diffusion_catalogue import load_catalogue
    from nstdiff.models.diffusion_hub import catalogue_part, locally_available, preferred_variant

    settings = settings or get_settings()
    catalogue = load_catalogue()
    gpu, downloads = has_gpu(settings), settings.downloads_allowed
    known = catalogue.families.get(family)
    if known is None:
        return Readiness(feature, family, (), gpu, downloads, f"'{family}' is not a model family of the catalogue "
                         f"({', '.join(catalogue.families)})")
    names = [(family, known.title)]
    if feature == "reference":
        if known.ip_adapter is None:
            return Readiness(feature, family, (), gpu, downloads, f"{known.title} has no IP-Adapter, so it cannot "
                             "take a style reference; choose another model family")
        names.append((f"{family}-ip-adapter", "its IP-Adapter"))
    parts = []
    for name, title in names:
        part = catalogue_part(name)
        sizes = catalogue.repos.get(part.repo, {})
        size = sizes.get(preferred_variant(part, settings)) or next(iter(sizes.values()), 0.0)
        parts.append(PartState(name, title, float(size), locally_available(name, settings)))
    return Readiness(feature, family, tuple(parts), gpu, downloads)
