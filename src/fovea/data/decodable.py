"""A cheap check, where videos are admitted, that the latents stage will be able to decode them.

Opening a container proves little: a truncated file, or one with a damaged stream, opens and
then fails while decoding. Decoding a whole clip twice (here and in the latents stage) would
double the cost of a large source, so the check decodes the two ends of the clip: its first
frame, and its last group of pictures (from the last keyframe to the end), after demuxing every
packet. That catches files cut short, streams that do not decode, and indexes that promise
more frames than the file holds, at the cost of one group of pictures per clip.
"""

from __future__ import annotations

from fovea.data.decode import DECODE_FAILURES, VideoDecodeError, open_video

__all__ = ["check_decodable"]


def check_decodable(data: bytes) -> int:
    """Decode the first frame and the last group of pictures of a video.

    Returns:
        The number of packets (frames) the video holds.

    Raises:
        VideoDecodeError: the bytes do not open as a video, a frame at either end does not
            decode, or the file holds fewer frames than its container states.
    """
    container = open_video(data)
    try:
        stream = container.streams.video[0]
        codec = stream.codec_context
        declared = stream.frames  # 0 when the container does not say
        first_decoded = False
        last_group: list = []  # packets from the last keyframe on
        packets = 0
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            packets += 1
            if not first_decoded:
                # A decoder may hold back a few packets before its first frame (reordering).
                first_decoded = bool(codec.decode(packet))
                continue
            if packet.is_keyframe:
                last_group = []
            last_group.append(packet)
        if not first_decoded:
            first_decoded = bool(codec.decode(None))  # flush: a clip of one or two frames
            last_group = []
        if not first_decoded:
            raise VideoDecodeError("no frame could be decoded")
        if declared and packets < declared:
            raise VideoDecodeError(f"truncated: {packets} of the {declared} frames its index states")
        if last_group:
            decoded = sum(len(codec.decode(packet)) for packet in last_group)
            decoded += len(codec.decode(None))
            if not decoded:
                raise VideoDecodeError("the last frames do not decode")
        return packets
    except VideoDecodeError:
        raise
    except DECODE_FAILURES as error:
        raise VideoDecodeError(f"decoding failed: {type(error).__name__}: {error}") from error
    finally:
        container.close()
