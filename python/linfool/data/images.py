"""Image files -> 64x64 Caffe records, exactly as convert_imageset reads them, with the broken
files that ImageNet is known to contain turned into a skip reason instead of a crash.

    load_chw(path, size=64) -> ((3, size, size) uint8 BGR channel-major array, None) or (None, reason)
"""

import collections
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

# Formats that convert_imageset's OpenCV (Debian 12: 4.6) decodes, by their first bytes.
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"P1", "pnm"),
    (b"P2", "pnm"),
    (b"P3", "pnm"),
    (b"P4", "pnm"),
    (b"P5", "pnm"),
    (b"P6", "pnm"),
)
_REJECTED = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"))
_JPEG_EOI = b"\xff\xd9"


def sniff(path) -> tuple:
    """Return (format, None) for a decodable file, or (None, reason) without decoding it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 64))
            tail = handle.read()
    except FileNotFoundError:
        return None, "missing file"
    except OSError as err:
        return None, f"unreadable file ({err.strerror})"
    if not head:
        return None, "empty file"
    for magic, name in _REJECTED:
        if head.startswith(magic):
            return None, f"{name} image (convert_imageset's OpenCV cannot decode it)"
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "webp", None
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            if name == "jpeg" and _JPEG_EOI not in tail:
                return None, "truncated JPEG (no end-of-image marker)"
            return name, None
    return None, "not an image file"


def opencv_reason(err) -> str:
    """A cv2.error in a few words: 'more pixels than OpenCV decodes (2^30)' or OpenCV's own line."""
    if "CV_IO_MAX_IMAGE_PIXELS" in str(err):
        return "more pixels than OpenCV decodes: 2^30, its CV_IO_MAX_IMAGE_PIXELS"
    return str(err).strip().splitlines()[-1][:160]


def load_chw(path, size: int = 64):
    """Decode like cv::imread(path, CV_LOAD_IMAGE_COLOR) (3-channel BGR; grayscale, CMYK and
    16-bit inputs converted by OpenCV), resize to size x size with cv::resize's default
    (bilinear, no aspect-ratio crop) and return it channel-major: (3, size, size) uint8, 0..255."""
    _, reason = sniff(path)
    if reason:
        return None, reason
    try:
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30)
        return None, f"OpenCV refuses to decode it ({opencv_reason(err)})"
    if image is None:
        return None, "could not be decoded by OpenCV"
    image = cv2.resize(image, (size, size))
    return np.ascontiguousarray(image.transpose(2, 0, 1)), None


def map_ordered(fn, items, threads):
    """Yield fn(item) for every item, in order, computed on `threads` threads with at most 16 per thread
    in flight. OpenCV's decoders release the GIL, so threads decode in parallel without a process
    pool's start-up and without pickling each result back to the parent."""
    pool = ThreadPoolExecutor(max(1, threads))
    pending = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 16 * max(1, threads):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # also on Ctrl-C or a failed write: what has not started is dropped
        pool.shutdown(wait=True, cancel_futures=True)


def worker_pool(processes=None, initializer=None):
    """A process pool for image work that holds the GIL (the synthetic set's drawing). Workers fork
    from a clean server process: forking a process whose OpenCV thread pool has already run can
    deadlock the children."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["cv2", "numpy", "linfool.data.images"])
    return ctx.Pool(processes, initializer)
