"""Reading frames from real video files and frame folders, and the errors for bad ones."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from client.datasets.clip_record import ClipError, ClipRecord
from client.datasets.frames import (
    MissingFrames,
    MissingSource,
    TruncatedVideo,
    UnreadableFrame,
    frame_number_of,
    iter_frames,
    list_frame_numbers,
    read_frames,
)

SIZE = 64


def numbered_frame(n: int) -> np.ndarray:
    """A frame whose content encodes n, so a wrong frame is detected exactly."""
    rng = np.random.default_rng(n)
    frame = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    frame[:8, :8] = n  # a flat block with the number as its value
    return frame


def write_video(path: Path, count: int) -> Path:
    # FFV1 is lossless, so decoded frames must equal the written ones bit for bit.
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, (SIZE, SIZE))
    assert writer.isOpened(), "FFV1 writer not available in this OpenCV build"
    for n in range(count):
        writer.write(numbered_frame(n))
    writer.release()
    return path


def write_folder(folder: Path, numbers, pattern: str = "img{}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        assert cv2.imwrite(str(folder / pattern.format(n)), numbered_frame(n))
    return folder


def record_for(source: Path, onset: int, apex: int | None, offset: int) -> ClipRecord:
    return ClipRecord(
        "test", "test/S01", "test/clip", source, onset, apex, offset, "surprise", 25.0
    )


# ---------------------------------------------------------------- videos


def test_video_frames_are_exact_and_in_requested_order(tmp_path):
    video = write_video(tmp_path / "clip.avi", 20)
    frames = read_frames(video, [5, 0, 12, 5])
    assert len(frames) == 4
    for frame, n in zip(frames, [5, 0, 12, 5]):
        assert frame.dtype == np.uint8 and frame.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(frame, numbered_frame(n))


def test_video_read_through_a_record_and_str_path(tmp_path):
    video = write_video(tmp_path / "clip.avi", 10)
    onset, apex = read_frames(record_for(video, 2, 7, 9), [2, 7])
    np.testing.assert_array_equal(apex, numbered_frame(7))
    np.testing.assert_array_equal(read_frames(str(video), [9])[0], numbered_frame(9))
    assert read_frames(video, []) == []


def test_list_frame_numbers_of_video(tmp_path):
    video = write_video(tmp_path / "clip.avi", 12)
    assert list_frame_numbers(video) == list(range(12))
    assert list_frame_numbers(video, verify=True) == list(range(12))


def test_iter_frames_of_video(tmp_path):
    video = write_video(tmp_path / "clip.avi", 12)
    got = list(iter_frames(video, 3, 7))
    assert [n for n, _ in got] == [3, 4, 5, 6]
    np.testing.assert_array_equal(got[2][1], numbered_frame(5))
    assert [n for n, _ in iter_frames(video, 10)] == [10, 11]
    with pytest.raises(TruncatedVideo, match="video ended at frame 12"):
        list(iter_frames(video, 0, 20))


def test_truncated_video_names_file_and_frames(tmp_path):
    video = write_video(tmp_path / "cut.avi", 40)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # interrupted copy
    decodable = list_frame_numbers(video, verify=True)
    assert 0 < len(decodable) < 40
    with pytest.raises(TruncatedVideo) as info:
        read_frames(record_for(video, 0, 30, 39), [0, 30])
    message = str(info.value)
    assert "cut.avi" in message and "test/clip" in message
    assert f"video ended at frame {len(decodable)}, apex 30 requested" in message
    assert "container lists 40 frames: file truncated or corrupt" in message
    assert info.value.category == "truncated_video"


def test_frame_past_end_of_intact_video(tmp_path):
    video = write_video(tmp_path / "short.avi", 10)
    with pytest.raises(
        TruncatedVideo, match=r"short\.avi: video ended at frame 10, frame 25 requested"
    ) as info:
        read_frames(video, [2, 25])
    assert "the video has 10 frames (0-9): annotation past its end?" in str(info.value)


def test_zero_byte_and_garbage_videos(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableFrame, match=r"empty\.mp4: video file is empty \(0 bytes\)"):
        read_frames(empty, [0])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableFrame, match=r"junk\.mp4: cannot open video"):
        read_frames(junk, [0])


def test_missing_source(tmp_path):
    with pytest.raises(MissingSource, match=r"nowhere\.avi: file or folder not found"):
        read_frames(record_for(tmp_path / "nowhere.avi", 0, 1, 2), [0, 1])


def test_negative_frame_number(tmp_path):
    video = write_video(tmp_path / "clip.avi", 5)
    with pytest.raises(MissingFrames, match="negative frame number -1"):
        read_frames(video, [-1])


# ---------------------------------------------------------------- folders


def test_frame_number_of_uses_last_digit_run():
    assert frame_number_of("img12.jpg") == 12
    assert frame_number_of("reg_img7.jpg") == 7
    assert frame_number_of("006_05562.jpg") == 5562  # SAMM: subject then frame
    assert frame_number_of("image0003.bmp") == 3
    assert frame_number_of("cover.jpg") is None


def test_folder_frames_sorted_by_digits_not_by_string(tmp_path):
    folder = write_folder(tmp_path / "sub01" / "EP01", [1, 2, 10, 11, 100])
    (folder / "notes.txt").write_text("not a frame")
    (folder / "cover.png").write_bytes(b"x")  # no digits: not part of the sequence
    assert list_frame_numbers(folder) == [1, 2, 10, 11, 100]
    frames = read_frames(folder, [2, 10, 100])
    for frame, n in zip(frames, [2, 10, 100]):
        np.testing.assert_array_equal(frame, numbered_frame(n))
    assert [n for n, _ in iter_frames(folder, 2, 11)] == [2, 10]


def test_folder_with_absolute_numbers_and_jpg(tmp_path):
    folder = tmp_path / "casme"
    folder.mkdir()
    for n in range(46, 52):
        assert cv2.imwrite(str(folder / f"reg_img{n}.jpg"), numbered_frame(n))
    onset, apex = read_frames(folder, [46, 50])
    # JPEG is lossy: compare the flat block that carries the number.
    assert abs(int(apex[:8, :8].mean()) - 50) <= 2 and abs(int(onset[:8, :8].mean()) - 46) <= 2


def test_missing_frame_numbers_in_folder(tmp_path):
    folder = write_folder(tmp_path / "gappy", [1, 2, 3, 5, 6])
    with pytest.raises(MissingFrames) as info:
        read_frames(record_for(folder, 1, 4, 6), [1, 4])
    message = str(info.value)
    assert "gappy" in message and "no image for apex 4" in message and "frames 1-6" in message


def test_zero_byte_jpg_names_the_file(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for n in (1, 2, 3):
        assert cv2.imwrite(str(folder / f"img{n}.jpg"), numbered_frame(n))
    (folder / "img2.jpg").write_bytes(b"")
    with pytest.raises(UnreadableFrame) as info:
        read_frames(folder, [1, 2])
    assert "img2.jpg" in str(info.value) and "empty (0 bytes)" in str(info.value)
    # The other frames are still readable on their own.
    assert len(read_frames(folder, [1, 3])) == 2


def test_corrupt_image_names_the_file(tmp_path):
    folder = write_folder(tmp_path / "clip", [1, 2])
    (folder / "img2.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UnreadableFrame, match=r"img2\.png: cannot decode image"):
        read_frames(folder, [2])


def test_two_files_with_the_same_frame_number(tmp_path):
    folder = write_folder(tmp_path / "dup", [1, 2])
    assert cv2.imwrite(str(folder / "img01.png"), numbered_frame(1))
    with pytest.raises(
        UnreadableFrame, match="two files claim frame number 1: img01.png and img1.png"
    ):
        read_frames(folder, [2])


def test_empty_folder_and_single_image(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFrames, match="no numbered"):
        read_frames(tmp_path / "empty", [0])
    folder = write_folder(tmp_path / "one", [1])
    with pytest.raises(UnreadableFrame, match="single image"):
        read_frames(folder / "img1.png", [0])


def test_grayscale_frames_come_back_as_bgr(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), numbered_frame(1)[..., 0])
    (frame,) = read_frames(folder, [1])
    assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8


# ---------------------------------------------------------------- ClipError


def test_clip_error_message_context_and_pickling(tmp_path):
    error = ClipError(
        "video ended at frame 17, apex 25 requested", clip_id="casme2/EP01", path=tmp_path / "a.avi"
    )
    assert (
        str(error)
        == f"clip 'casme2/EP01' {tmp_path / 'a.avi'}: video ended at frame 17, apex 25 requested"
    )
    clone = pickle.loads(pickle.dumps(TruncatedVideo("x", None, "b.avi")))
    assert type(clone) is TruncatedVideo and clone.path == Path("b.avi") and clone.clip_id is None
    filled = clone.with_context(clip_id="s/1", path="ignored.avi")
    assert (
        type(filled) is TruncatedVideo and filled.clip_id == "s/1" and filled.path == Path("b.avi")
    )
