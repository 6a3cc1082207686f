"""Video style transfer: every frame of a clip through an image method, held steady along the optical flow
(Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer for videos"; see `temporal.py` for each kind of method).

The clip is decoded at the output size, the flow of each frame pair is estimated on the content frames (which also
finds the scene cuts), and each frame is stylized knowing the one before. Progress is counted in frames; Cancel stops
inside a frame and nothing is written.
"""
from __future__ import annotations

import time

import numpy as np

from extensions.video.flow import FlowEstimator
from extensions.video.frames import FrameRunner, image_method, picture
from extensions.video.measures import WarpingError
from extensions.video.result import VideoResult
from extensions.video.schema import METHOD_NAME, VideoStyleRequest
from extensions.video.temporal import FrameStabilizer
from extensions.video.videoio import read_clip
from nstdiff.context import RunContext
from nstdiff.errors import Cancelled
from nstdiff.registry import Capabilities, Method, register_method


@register_method
class VideoStyleMethod(Method):
    name = METHOD_NAME
    title = "Video (any image method, steady along the optical flow)"
    description = ("Stylizes each frame of a clip with an image method, carrying the previous frame's paint along "
                   "the optical flow so it does not flicker (Ruder et al. 2016); scene cuts start afresh.")
    request_model = VideoStyleRequest
    options_model = VideoStyleRequest
    capabilities = Capabilities(modality="video", needs_content=True, style_images="optional", prompt="optional")

    def execute(self, request: VideoStyleRequest, context: RunContext) -> VideoResult:
        started = time.perf_counter()
        image_method(request.image_method)  # a wrong method is refused before the clip is decoded
        settings = context.settings
        clip = read_clip(request.content, request.size, request.fps, request.max_seconds, request.frames, settings)
        runner = FrameRunner(request, context)
        stabilizer = FrameStabilizer(runner, request.consistency, request.keyframe_every)
        estimator = FlowEstimator()
        total = len(clip.frames)
        context.message(f"{total} frames of {clip.frames.shape[2]}x{clip.frames.shape[1]} px at "
                        f"{float(clip.fps):.3g} fps, {stabilizer.kind} method {runner.method.name}")
        loaded = time.perf_counter()
        outputs: list[np.ndarray] = []  # uint8: a long clip in float would take four times the memory
        steadiness, cuts, shares = WarpingError(), [], []  # measured as it goes: the flows are not kept
        previous: np.ndarray | None = None  # the last stylized frame in float, carried to the next
        flow_seconds = 0.0
        for index, frame in enumerate(clip.frames):
            tick = time.perf_counter()
            # at consistency 0 nothing is carried: a plain frame loop, no flow (nor warping error) to pay for
            motion = estimator.motion(clip.frames[index - 1], frame) if index and request.consistency else None
            flow_seconds += time.perf_counter() - tick
            if motion is not None:
                shares.append(motion.reliable_share)
                cuts += [index] if motion.cut else []
            carried = None if motion is None or motion.cut else motion
            try:
                previous = stabilizer.render(index, frame, carried, previous)
            except Cancelled:
                raise Cancelled(index, total) from None
            made = picture(previous)
            outputs.append(np.asarray(made))
            if index:
                steadiness.add(outputs[-2], outputs[-1], motion)
            shown = index == 0 or context.wants_preview()  # the first stylized frame at once, then now and then
            context.step(index + 1, total, stage="frames", preview=made if shown else None)
        frames = np.stack(outputs)
        stylized = time.perf_counter()
        measures: dict = {"scene_cuts": cuts, "kind": stabilizer.kind}
        if request.consistency and total > 1:
            measures.update(warping_error=round(steadiness.value, 5), reliable=round(float(np.mean(shares)), 4))
        if stabilizer.kind == "diffusion":
            measures["keyframes"] = stabilizer.keyframes
        notes = [*clip.notes, *runner.notes, *context.notes]
        if cuts:
            notes.append(f"video: scene cut{'s' if len(cuts) > 1 else ''} at frame{'s' if len(cuts) > 1 else ''} "
                         f"{', '.join(map(str, cuts))}: started afresh there")
        if not clip.has_audio:
            notes.append("video: the clip has no audio track")
        parameters = {**request.model_dump(mode="json"), "seed": context.seed}
        return VideoResult(
            frames=frames, fps=clip.fps, source=request.content, audio_from=clip.start, audio_until=clip.cut_at,
            method=self.name, encoder=runner.method.name, seed=context.seed, parameters=parameters, measures=measures,
            notes=notes,
            timings={"load": round(loaded - started, 3), "flow": round(flow_seconds, 3),
                     "stylize": round(stylized - loaded - flow_seconds, 3),
                     "per_frame": round((stylized - loaded) / total, 4),
                     "total": round(time.perf_counter() - started, 3)})

