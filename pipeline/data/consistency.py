"""Annotations checked against the probed videos: official times and ground-truth segments past the end.

The files a user has are not always the files the annotations were made on (re-encoded, trimmed, a
different cut). Two checks, both against the probed duration (the end of the last frame):

- `check_frame_times`: official `frame2time` times after the end would all show the last frame. A few
  are rounding or a trimmed tail (counted, warned, clamped to the last frame); when more than
  `decode.max_times_past_end` of a video's times are past its end, the file is not the annotated
  video: status `mismatched`, skipped like a corrupt file.
- `clip_segments`: a ground-truth segment that ends after the end is clipped to it (counted, warned);
  one that starts after the end cannot be scored and is refused with an error naming it.

Both allow `PAST_END_SLACK_S` of rounding (official times and labels are given to 0.1 s).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from pipeline.data.datasets import AnnotationError, QARecord
from pipeline.data.video import PAST_END_SLACK_S, VideoProbe, times_past_end


def check_frame_times(
    probes: dict[str, VideoProbe],
    frame_times: dict[str, list[float]],
    num_frames: int,
    max_share: float,
) -> tuple[dict[str, VideoProbe], dict[str, int]]:
    """`(probes, past)`: usable videos whose official times lie past their end, counted per video.

    Only official lists of T times are checked (others are not used: uniform sampling). A video with
    more than `max_share` of its times past the end becomes `mismatched`, its numbers kept.
    """
    checked, past = dict(probes), {}
    for video_id, probe in probes.items():
        official = frame_times.get(video_id)
        if not probe.ok or official is None or len(official) != num_frames:
            continue
        count = times_past_end(official, probe.duration)
        past[video_id] = count
        if count > max_share * len(official):
            checked[video_id] = dataclasses.replace(
                probe,
                status="mismatched",
                error=f"{count} of {len(official)} official frame times lie past the end of the file "
                f"({probe.duration:.2f} s; the last asks for {official[-1]:g} s): it is shorter than the annotated "
                f"video (more than decode.max_times_past_end={max_share:g} of them)",
            )
    return checked, past


def clip_segments(
    questions: tuple[QARecord, ...], probes: dict[str, VideoProbe]
) -> tuple[tuple[QARecord, ...], Counter]:
    """`(questions, clipped)`: segments of usable videos clipped to the video's end, counted per video.

    Raises `AnnotationError` for a segment that starts after the end (it cannot be grounded).
    """
    clipped: Counter = Counter()
    result = []
    for question in questions:
        probe = probes.get(question.video_id)
        if probe is None or not probe.ok or not question.segments:
            result.append(question)
            continue
        end = probe.duration
        segments = []
        for start, stop in question.segments:
            if start > end + PAST_END_SLACK_S:
                raise AnnotationError(
                    f"split {question.split!r}, video {question.video_id}, qid {question.qid}: the ground-truth "
                    f"segment [{start:g}, {stop:g}] starts after the end of the video file ({end:.2f} s); the label "
                    "or the file is wrong: fix the label, or replace the file with the annotated video"
                )
            if stop > end + PAST_END_SLACK_S:
                clipped[question.video_id] += 1
                stop = end
            segments.append((start, stop))
        result.append(dataclasses.replace(question, segments=tuple(segments)))
    return tuple(result), clipped
