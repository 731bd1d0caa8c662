"""MP4 encode/decode, frame sampling (at a stride and at an fps), resize/crop, probing and error
mapping, over every container and codec at hand."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from sample_clips import Clip, clips, expected_indices, frame_index, frames_of_levels  # noqa: F401 - a fixture
from video_fixtures import encode_clip, faststart_mp4

from fovea.data import decode as decode_module
from fovea.data.decode import (
    ClipTooShortError,
    VideoDecodeError,
    decode_video,
    load_clip,
    probe_video,
    resize_center_crop,
    sample_frame_indices,
)
from fovea.data.encode import encode_mp4
from fovea.data.synthetic import make_clip


@pytest.fixture(scope="module")
def clip_frames() -> np.ndarray:
    return make_clip(seed=0, index=1, num_frames=12, size=64, sprites=3).frames


@pytest.fixture(scope="module")
def mp4(clip_frames: np.ndarray) -> bytes:
    return encode_mp4(clip_frames, fps=8)


def test_round_trip_is_close(clip_frames: np.ndarray, mp4: bytes) -> None:
    decoded = decode_video(mp4)
    assert decoded.shape == clip_frames.shape and decoded.dtype == np.uint8
    mean_abs_error = np.abs(decoded.astype(np.int16) - clip_frames.astype(np.int16)).mean()
    # ~3/255 at 64x64, almost all of it from yuv420p's half-resolution chroma on sharp sprite
    # edges (crf 0 gives nearly the same), not from crf 18.
    assert mean_abs_error < 4.0, mean_abs_error


def test_encoding_is_deterministic(clip_frames: np.ndarray, mp4: bytes) -> None:
    assert encode_mp4(clip_frames, fps=8) == mp4


def test_odd_sizes_are_padded_to_even() -> None:
    frames = np.full((3, 33, 47, 3), 128, dtype=np.uint8)
    assert decode_video(encode_mp4(frames, fps=8)).shape == (3, 34, 48, 3)


@pytest.mark.parametrize("total,num", [(16, 8), (8, 8), (100, 2), (100, 8), (17, 4), (9, 3), (250, 16)])
def test_sample_indices_have_one_constant_stride(total: int, num: int) -> None:
    indices = sample_frame_indices(total, num)
    assert len(indices) == num and indices[0] >= 0 and indices[-1] <= total - 1
    steps = set(np.diff(indices).tolist())
    assert len(steps) == 1, f"strides {sorted(steps)} for {num} of {total} frames"
    stride = steps.pop()
    # the largest stride that fits, and the unused frames split around the samples
    assert stride * (num - 1) <= total - 1 < (stride + 1) * (num - 1)
    assert abs(indices[0] - (total - 1 - indices[-1])) <= 1


def test_sample_indices_of_16_frames_take_every_other_one() -> None:
    # linspace rounding gave 0,2,4,6,9,11,13,15: one step 1.5x the others
    assert sample_frame_indices(16, 8) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert sample_frame_indices(8, 8) == list(range(8))
    assert sample_frame_indices(100, 2) == [0, 99]


def test_too_short_raises() -> None:
    with pytest.raises(ClipTooShortError):
        sample_frame_indices(5, 8)
    assert issubclass(ClipTooShortError, VideoDecodeError)
    short = encode_mp4(np.zeros((3, 32, 32, 3), dtype=np.uint8), fps=8)
    with pytest.raises(ClipTooShortError, match="3 frames"):
        load_clip(short, num=8, size=32)


def test_resize_center_crop_keeps_the_centre_of_a_wide_frame() -> None:
    # 48x96: after scaling the short side to 24 the crop keeps original columns 24..72.
    frames = np.zeros((2, 48, 96, 3), dtype=np.uint8)
    frames[..., 2] = 200  # blue sides
    frames[:, :, 24:72] = (200, 0, 0)  # red centre
    out = resize_center_crop(frames, 24)
    assert out.shape == (2, 24, 24, 3) and out.dtype == np.uint8
    inner = out[:, :, 2:-2].astype(int)
    assert (inner[..., 0] > 180).all() and (inner[..., 2] < 20).all()


def test_resize_center_crop_tall_frame_and_fast_path() -> None:
    tall = np.zeros((1, 90, 30, 3), dtype=np.uint8)
    tall[:, 30:60] = 255  # the middle third survives the crop
    out = resize_center_crop(tall, 20)
    assert out.shape == (1, 20, 20, 3)
    assert out[:, 2:-2].min() > 240
    square = np.zeros((2, 20, 20, 3), dtype=np.uint8)
    assert resize_center_crop(square, 20) is square


def test_load_clip_samples_and_crops(clip_frames: np.ndarray, mp4: bytes) -> None:
    clip = load_clip(mp4, num=4, size=32)
    assert clip.frames.shape == (4, 32, 32, 3)
    assert clip.indices == [1, 4, 7, 10] and clip.total_frames == 12  # stride 3, centred
    expected = resize_center_crop(decode_video(mp4)[clip.indices], 32)
    np.testing.assert_array_equal(clip.frames, expected)


def test_load_clip_counts_frames_when_the_container_states_none(clip_frames: np.ndarray) -> None:
    mkv = encode_clip(clip_frames, container_format="matroska")  # MKV states no frame count
    assert av.open(io.BytesIO(mkv)).streams.video[0].frames == 0  # the case under test
    clip = load_clip(mkv, num=4, size=32)
    assert clip.total_frames == 12 and clip.indices == [1, 4, 7, 10]
    np.testing.assert_array_equal(clip.frames, resize_center_crop(decode_video(mkv)[clip.indices], 32))


def test_load_clip_trusts_decoded_frames_over_a_wrong_stated_count(mp4: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # A container that states more frames than it holds: sampling must come from the real ones.
    monkeypatch.setattr(decode_module, "_declared_frame_count", lambda container: 20)
    clip = load_clip(mp4, num=4, size=32)
    assert clip.total_frames == 12 and clip.indices == [1, 4, 7, 10]
    np.testing.assert_array_equal(clip.frames, resize_center_crop(decode_video(mp4)[clip.indices], 32))


def _bad_inputs(mp4: bytes) -> dict[str, bytes]:
    noise = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    faststart = faststart_mp4(noise)
    return {
        "empty": b"",
        "random": np.random.default_rng(1).bytes(4096),
        "text": b"this is not a video at all\n" * 20,
        "truncated": mp4[: len(mp4) // 2],
        "header_only": mp4[:64],
        "truncated_faststart": faststart[: int(len(faststart) * 0.7)],
    }


def test_corrupt_bytes_raise_video_decode_error(mp4: bytes) -> None:
    for name, data in _bad_inputs(mp4).items():
        with pytest.raises(VideoDecodeError):
            decode_video(data)
            pytest.fail(f"{name} decoded")
        with pytest.raises(VideoDecodeError) as raised:
            load_clip(data, num=4, size=32)
        # Damage is reported as damage, not as a short clip.
        assert not isinstance(raised.value, ClipTooShortError), name


def test_encode_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((2, 8, 8, 3), dtype=np.float32), fps=8)
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((0, 8, 8, 3), dtype=np.uint8), fps=8)


# Sample times at 3.3 and 5.5 fps stay over 2 ms from every frame of every test clip: WebM and
# Matroska round timestamps to milliseconds, which would make an exact tie go either way.
@pytest.mark.parametrize("fps", [None, 3.3, 5.5])
def test_every_codec_and_frame_rate_decodes_to_the_requested_frames(clips: list[Clip], fps: float | None) -> None:
    names = {clip.name for clip in clips}
    assert {"h264-landscape", "mpeg4-avi-portrait", "h264-mkv", "h264-vfr"} <= names
    for clip in clips:
        sampled = load_clip(clip.data, num=4, size=32, fps=fps)
        expected = expected_indices(clip, 4, fps)
        assert sampled.frames.shape == (4, 32, 32, 3), clip.name
        assert [frame_index(frame) for frame in sampled.frames] == expected, clip.name
        assert sampled.indices == expected, clip.name
        if fps is not None:
            np.testing.assert_allclose(sampled.times, [clip.frame_times[i] for i in expected], atol=1e-3)


def test_fps_sampling_reads_variable_frame_rate_by_time(clips: list[Clip]) -> None:
    vfr = next(clip for clip in clips if clip.name == "h264-vfr")
    # Frames start at 0, 40, 160, 410, 450 ms: each sample time 0, 100, .., 500 ms gets the
    # frame on screen then, so the long 250 ms frame gap repeats frame 2.
    sampled = load_clip(vfr.data, num=6, size=32, fps=10.0)
    assert sampled.indices == [0, 1, 2, 2, 2, 4]
    assert sampled.times == [0.0, 0.04, 0.16, 0.16, 0.16, 0.45]
    # Evenly over the clip picks by frame count, not time: a different choice.
    assert load_clip(vfr.data, num=6, size=32).indices != sampled.indices


def test_fps_sampling_rejects_a_clip_shorter_than_the_span() -> None:
    clip = encode_mp4(frames_of_levels(8, 32, 32), fps=8)  # frames at 0 .. 0.875 s
    assert load_clip(clip, num=8, size=32, fps=8.0).indices == list(range(8))
    with pytest.raises(ClipTooShortError, match=r"0\.875s"):
        load_clip(clip, num=8, size=32, fps=7.0)  # the last sample, 1.0 s, is past the end


def test_probe_video_reads_container_facts(clips: list[Clip]) -> None:
    for clip in clips:
        info = probe_video(clip.data)
        assert info.width > 0 and info.height > 0 and info.codec, clip.name
        assert info.duration is not None and info.duration > 0, clip.name
