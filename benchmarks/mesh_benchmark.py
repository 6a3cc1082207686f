"""Mesh texture stylization: time, seam jump, coverage and style loss on a 5k-face model, field mode vs the
direct-texture baseline, measured in the same run.

    python benchmarks/mesh_benchmark.py [--style PAINTING] [--device cpu|cuda] [--threads 2] [--encoder auto]

Targets (issue): default settings (8 views at 128 px) in ≤ 3 min on 2 CPU cores, ≤ 20 s on one H200.
The model is a bumpy icosphere (5,120 triangles, no UVs: xatlas unwraps it), built here.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

from extensions.mesh.schema import MeshStyleRequest
from nstdiff.executor import stylize
from nstdiff.settings import reload_settings

DEFAULT_STYLE = Path("/work/shared/data/starry_night.jpg")


def bumpy_sphere(path: Path) -> Path:
    mesh = trimesh.creation.icosphere(4)  # 5,120 faces
    v = mesh.vertices
    mesh.vertices = v * (1 + 0.15 * np.sin(4 * v[:, :1]) * np.cos(3 * v[:, 1:2]) + 0.1 * np.sin(5 * v[:, 2:3]))
    mesh.export(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="folder for the GLBs and previews")
    args = parser.parse_args()
    import os

    os.environ["NSTDIFF_DEVICE"] = args.device
    os.environ["NSTDIFF_THREADS"] = str(args.threads)
    reload_settings()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        model = bumpy_sphere(out / "bumpy_5k.glb")
        print(f"model: {model.name}, 5120 triangles; style {args.style.name}; device {args.device}, "
              f"{args.threads} threads")
        print(f"{'mode':8} {'encoder':8} {'steps':>5} {'seconds':>8} {'style loss':>20} {'seam jump/255':>14} "
              f"{'coverage':>9}")
        for mode in ("field", "texture"):
            started = time.perf_counter()
            result = stylize(MeshStyleRequest(model=model, style=args.style, mode=mode, encoder=args.encoder, seed=0))
            seconds = time.perf_counter() - started
            m = result.measures
            print(f"{mode:8} {result.encoder:8} {result.parameters['steps']:>5} {seconds:>8.1f} "
                  f"{m['style_loss_start']:>9.3f} → {m['style_loss_end']:<8.3f} {m['seam_jump']:>14.1f} "
                  f"{m['coverage']:>9.1%}", flush=True)
            result.save(out / f"{mode}.glb")
            result.picture.save(out / f"{mode}_preview.png")
        print("field = the method (colour field baked into the texture); texture = direct-texture baseline")


if __name__ == "__main__":
    main()
