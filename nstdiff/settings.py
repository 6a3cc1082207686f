"""All settings in one place (`NSTDIFF_` environment variables override the config file, which overrides defaults).

Sources, highest priority first: keyword arguments, environment (`NSTDIFF_MODELS_DIR=...`), the TOML file named by
`NSTDIFF_CONFIG`, then `configs/default.toml` shipped with the package.
"""
from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

DEFAULT_CONFIG = resources.files("nstdiff.configs") / "default.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NSTDIFF_", extra="forbid", validate_default=True)

    cache_dir: Path = Field(Path("~/.cache/nstdiff"), description="Downloads and converted weights live here.")
    models_dir: Path | None = Field(None, description="Where models are looked up and fetched to (cache_dir/models).")
    outputs_dir: Path = Field(Path("~/nstdiff-outputs"), description="Results and history of the app.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    allow_downloads: bool = Field(True, description="Fetch missing models; also off when HF_HUB_OFFLINE=1.")
    max_input_pixels: int = Field(40_000_000, ge=1, description="Larger input images are refused (decompression bombs).")
    max_input_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Larger input files are refused.")
    max_output_side: int = Field(4096, ge=16, description="Longest side of an output image, in pixels.")
    max_mesh_faces: int = Field(500_000, ge=1, description="3D models with more triangles are refused.")
    # a video's frames are held in memory twice (decoded and stylized): 900 frames at 768 px is about 1.8 GB
    max_video_seconds: float = Field(60.0, gt=0, description="Longer video clips are refused unless cut (--max-seconds).")
    max_video_side: int = Field(768, ge=16, description="Longest side a video is stylized at, in pixels.")
    max_video_frames: int = Field(900, ge=1, description="Video clips with more frames (after --fps) are refused.")
    default_encoder: str = Field("auto", description="auto (best available), vgg19, vgg16 or random.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; None keeps torch's choice.")
    server_host: str = Field("127.0.0.1", description="Address the app binds to; loopback unless you mean it.")
    server_port: int = Field(7860, ge=1, le=65535)
    gpu_slots: int = Field(1, ge=1, le=64, description="Jobs the app runs at once on the device.")
    queue_max_size: int = Field(16, ge=1, le=10_000, description="Waiting jobs beyond this are refused.")
    max_upload_mb: int = Field(64, ge=1, le=4096, description="Largest file the app accepts.")
    auth_max_failures: int = Field(5, ge=1, description="Failed logins from one address before it must wait.")
    auth_lockout_seconds: float = Field(60.0, gt=0, description="How long failed logins count against an address.")
    trust_proxy_headers: bool = Field(False, description="Take the client's address from X-Forwarded-For: only "
                                      "behind a reverse proxy on this machine.")
    max_job_memory_gb: float | None = Field(
        None, gt=0, description="Memory one job may use; None: 80% of the memory free when it starts (GPU's on CUDA).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # diffusion
    diffusion_family: str = Field("sd15", description="Model family of the diffusion methods (configs/diffusion.toml).")
    diffusion_dtype: Literal["auto", "fp16", "bf16", "fp32"] = Field(
        "auto", description="auto: fp16 on CUDA, fp32 elsewhere.")
    attention_slicing: bool = Field(False, description="Less GPU memory for attention, a little slower.")
    vae_tiling: bool = Field(False, description="Decode large images in tiles (less memory).")
    cpu_offload: bool = Field(False, description="Keep idle model parts in CPU memory (GPUs with little memory).")
    keep_pipelines_warm: bool = Field(True, description="Keep the loaded diffusion model between requests.")
    diffusion_memory_gb: float | None = Field(
        None, gt=0, description="Memory the loaded diffusion models may hold together; the least recently used are "
        "dropped past it. None: 80% of the device's memory.")
    segmentation_model: str = Field(
        "clipseg", description="Model for masks from words: clipseg (CIDAS/clipseg-rd64-refined), a Hugging Face repo "
        "id or a local folder of a CLIPSeg model (safetensors).")
    presets_file: Path | None = Field(None, description="Your own style presets (TOML), added to the built-in ones.")
    # where jobs run: this process, or the replicas of a Ray cluster (README, "Several GPU machines")
    backend: Literal["local", "ray"] = Field("local", description="local: jobs run in the app's process; ray: on a "
                                             "Ray cluster's replicas (pip install 'nstdiff[ray]').")
    ray_address: str | None = Field(None, description="Ray cluster to join, e.g. 10.0.0.5:6379; None starts a Ray "
                                    "instance on this machine.")
    ray_num_gpus: dict[str, float] = Field(
        {"classic": 0.0, "diffusion": 1.0, "audio": 0.0, "mesh": 0.0, "video": 0.0},
        description="GPUs each replica of a method family asks Ray for (fractions share a GPU).")
    ray_num_cpus: float = Field(1.0, ge=0, description="CPUs each replica asks Ray for.")
    ray_min_replicas: int = Field(1, ge=0, le=1000, description="Replicas each family keeps running once it is used.")
    ray_max_replicas: int = Field(4, ge=1, le=1000, description="Replicas a family may grow to as its queue grows.")
    ray_jobs_per_replica: int = Field(1, ge=1, le=64, description="Jobs one replica runs at once.")
    ray_scale_up_after_s: float = Field(10.0, ge=0, le=3600, description="Seconds a family's queue must stay longer "
                                        "than its replicas take before another replica starts.")
    ray_scale_down_after_s: float = Field(300.0, ge=0, le=86400, description="Seconds a family's replicas must stay "
                                          "idle before one stops (down to ray_min_replicas; 0 frees its GPUs).")

    @field_validator("cache_dir", "outputs_dir", "models_dir", "presets_file")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(os.path.expandvars(str(value))).expanduser()

    @model_validator(mode="after")
    def _replicas_in_order(self) -> Settings:
        if self.ray_min_replicas > self.ray_max_replicas:
            raise ValueError(f"ray_min_replicas ({self.ray_min_replicas}) is above ray_max_replicas "
                             f"({self.ray_max_replicas})")
        return self

    @property
    def job_slots(self) -> int:
        """Jobs the app runs at once: `gpu_slots` on this machine; on a Ray cluster, as many as every family's
        replicas can take when grown to their most (the rest wait in the app's queue, which shows their place)."""
        if self.backend == "local":
            return self.gpu_slots
        return max(self.gpu_slots, self.ray_max_replicas * self.ray_jobs_per_replica * len(self.ray_num_gpus))

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.cache_dir / "models"

    @property
    def downloads_allowed(self) -> bool:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        return self.allow_downloads and not offline

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [Path(str(DEFAULT_CONFIG))]
        if os.environ.get("NSTDIFF_CONFIG"):
            files.append(Path(os.environ["NSTDIFF_CONFIG"]).expanduser())
        # later files win in TomlConfigSettingsSource's deep merge
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=files)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; call `reload_settings()` after changing the environment."""
    return Settings()


def reload_settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()
