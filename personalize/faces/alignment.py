"""FFHQ-style face alignment from MediaPipe's 478 landmarks, and pasting crops back.

StyleGAN2-FFHQ only models faces aligned the way FFHQ was made (Karras et al. 2019): an oriented
square whose center and size come from the eye centers and the mouth corners. We compute that
square ("quad") with FFHQ's recipe from MediaPipe points that play the role of dlib's 68-point
eye contours and mouth corners, warp the frame into it with ONE affine warp, and fill the parts of
the square outside the frame the FFHQ way (reflected, blurred and faded to the median colour).

Coordinates are continuous pixels (pixel ``i`` spans ``[i, i + 1)``), the convention of
MediaPipe's normalized coordinates times the image size, for both the source frame and the crop.
A transform is the 3x3 matrix ``T`` with ``crop_xy1 = T @ source_xy1`` in that convention; OpenCV
samples at pixel centres, so ``to_cv2`` shifts it by half a pixel on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe counterparts of dlib's six eye-contour points (36-41 and 42-47): outer corner, two
# upper-lid, inner corner, two lower-lid points. The mean of six contour points, like FFHQ's
# eye centre, follows the head rather than the gaze (iris centres would make crops follow the
# eyes' motion). "Image-left" is the subject's right eye.
EYE_IMAGE_LEFT = (33, 160, 158, 133, 153, 144)
EYE_IMAGE_RIGHT = (362, 385, 387, 263, 373, 380)
# Outer mouth corners, as dlib's 48 and 54.
MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 61, 291
# Silhouette of the face (MediaPipe's FACE_OVAL contour), for paste-back masks.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)

# Calibration of MediaPipe's points against dlib's (see tests/test_faces_alignment.py, which
# re-aligns FFHQ-aligned portraits and expects the border square back). Neutral by default.
QUAD_SCALE = 1.0
QUAD_SHIFT = 0.0  # along eye_to_mouth, as a fraction of its length


@dataclass(frozen=True)
class Quad:
    """An oriented square: centre ``c`` (2,), half-side vector ``x`` (2,) pointing right.

    ``y`` (pointing down) is ``x`` rotated by +90 degrees in image coordinates.
    """

    c: np.ndarray
    x: np.ndarray

    @property
    def y(self) -> np.ndarray:
        return np.array([-self.x[1], self.x[0]])

    @property
    def size(self) -> float:
        """Side length in source pixels (FFHQ's ``qsize``)."""
        return float(2.0 * np.hypot(*self.x))

    def corners(self) -> np.ndarray:
        """(4, 2): top-left, bottom-left, bottom-right, top-right (FFHQ's quad order)."""
        c, x, y = self.c, self.x, self.y
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def alignment_anchors(landmarks: np.ndarray) -> np.ndarray:
    """(..., 478, >=2) landmarks -> (..., 4, 2): eye (image-left), eye (image-right), mouth
    corner (image-left), mouth corner (image-right)."""
    lm = np.asarray(landmarks, dtype=np.float64)[..., :2]
    return np.stack([lm[..., EYE_IMAGE_LEFT, :].mean(axis=-2),
                     lm[..., EYE_IMAGE_RIGHT, :].mean(axis=-2),
                     lm[..., MOUTH_IMAGE_LEFT, :], lm[..., MOUTH_IMAGE_RIGHT, :]], axis=-2)


def quad_params_from_anchors(anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ's recipe, vectorized: (..., 4, 2) anchors -> centres c (..., 2), half-sides x (..., 2)."""
    eye_left, eye_right, mouth_left, mouth_right = (anchors[..., i, :] for i in range(4))
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    # x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]
    x = eye_to_eye - np.stack([-eye_to_mouth[..., 1], eye_to_mouth[..., 0]], axis=-1)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    scale = np.maximum(np.linalg.norm(eye_to_eye, axis=-1) * 2.0,
                       np.linalg.norm(eye_to_mouth, axis=-1) * 1.8)
    x = x * (scale * QUAD_SCALE)[..., None]
    c = eye_avg + eye_to_mouth * (0.1 + QUAD_SHIFT)
    return c, x


def quad_from_landmarks(landmarks: np.ndarray) -> Quad:
    """The FFHQ quad of one face's (478, 3) landmarks."""
    c, x = quad_params_from_anchors(alignment_anchors(landmarks))
    return Quad(c, x)


def quad_transform(quad: Quad, size: int) -> np.ndarray:
    """3x3 source->crop matrix mapping the quad onto the ``size`` x ``size`` crop.

    c goes to the crop centre, c + x to the middle of the right edge, c + y to the bottom middle.
    """
    basis = np.stack([quad.x, quad.y], axis=1)          # columns x, y
    linear = (size / 2.0) * np.linalg.inv(basis)
    transform = np.eye(3)
    transform[:2, :2] = linear
    transform[:2, 2] = size / 2.0 - linear @ quad.c
    return transform


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply 3x3 similarities to points: transform (..., 3, 3), points (..., N, 2 or 3).

    Batch dimensions broadcast, e.g. (T, 3, 3) with (T, 478, 3). z is scaled like x and y.
    """
    transform = np.asarray(transform, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    out = points.copy()
    linear = transform[..., :2, :2]
    out[..., :2] = (np.einsum("...ij,...nj->...ni", linear, points[..., :2])
                    + transform[..., None, :2, 2])
    if points.shape[-1] > 2:
        scale = np.sqrt(np.abs(np.linalg.det(linear)))
        out[..., 2] = points[..., 2] * scale[..., None]
    return out


def to_cv2(transform: np.ndarray) -> np.ndarray:
    """Continuous-coordinate 3x3 matrix -> OpenCV's 2x3 (pixel centres at integers)."""
    shift_in = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    shift_out = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    return (shift_out @ transform @ shift_in)[:2]


def _scale_of(transform: np.ndarray) -> float:
    """Output pixels per input pixel of a similarity."""
    return float(np.sqrt(abs(np.linalg.det(transform[:2, :2]))))


def _prefilter(image: np.ndarray, transform: np.ndarray, roi: tuple[int, int, int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``roi`` (x0, y0, x1, y1) out of ``image`` and, when the warp shrinks by 2x or more,
    box-downsample it by an integer factor (INTER_AREA) first, so the bilinear warp after it
    never skips source pixels (aliasing). Returns the smaller image and the matching transform."""
    x0, y0, x1, y1 = roi
    part = image[y0:y1, x0:x1]
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    transform = transform @ shift
    factor = int(np.floor(1.0 / max(_scale_of(transform), 1e-9)))
    if factor >= 2 and min(part.shape[:2]) >= 2 * factor:
        h, w = part.shape[:2]
        small = cv2.resize(part, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        # resize maps [0, w//factor*factor) onto [0, w//factor): a pure scale in continuous coords
        sx = (w // factor) / w
        sy = (h // factor) / h
        # INTER_AREA with a partial last block: take the exact ratio used by OpenCV
        up = np.array([[1 / sx, 0, 0], [0, 1 / sy, 0], [0, 0, 1]])
        return small, transform @ up
    return part, transform


def _roi_for(transform: np.ndarray, out_size: tuple[int, int], shape: tuple[int, ...],
             margin: int = 3) -> tuple[int, int, int, int]:
    """Source-image box (x0, y0, x1, y1) that the output rectangle samples from, clipped."""
    w_out, h_out = out_size
    inv = np.linalg.inv(transform)
    corners = np.array([[0, 0, 1], [w_out, 0, 1], [0, h_out, 1], [w_out, h_out, 1]], float)
    src = corners @ inv.T
    h, w = shape[:2]
    x0 = int(np.clip(np.floor(src[:, 0].min()) - margin, 0, w - 1))
    y0 = int(np.clip(np.floor(src[:, 1].min()) - margin, 0, h - 1))
    x1 = int(np.clip(np.ceil(src[:, 0].max()) + margin, x0 + 1, w))
    y1 = int(np.clip(np.ceil(src[:, 1].max()) + margin, y0 + 1, h))
    return x0, y0, x1, y1


def warp_crop(frame: np.ndarray, transform: np.ndarray, size: int,
              padding: str = "ffhq") -> np.ndarray:
    """Sample the ``size`` x ``size`` crop that ``transform`` (source->crop) defines.

    ``padding``: 'ffhq' (reflect, then blur and fade towards the median colour as FFHQ does),
    'reflect' (mirror only) or 'black'. Returns (size, size, 3) uint8 RGB.
    """
    roi = _roi_for(transform, (size, size), frame.shape)
    part, local = _prefilter(frame, transform, roi)
    border = cv2.BORDER_CONSTANT if padding == "black" else cv2.BORDER_REFLECT_101
    # Supersample when the remaining warp still shrinks (between 1x and 2x): warp at 2x, area-down.
    supersample = 2 if _scale_of(local) < 0.8 else 1
    out_size = size * supersample
    up = np.diag([supersample, supersample, 1.0])
    crop = cv2.warpAffine(part, to_cv2(up @ local), (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=(0, 0, 0))
    if supersample > 1:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    if padding == "ffhq":
        crop = _ffhq_fade(crop, transform, frame.shape[:2])
    return crop


def _ffhq_fade(crop: np.ndarray, transform: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """FFHQ's border treatment, computed in crop space.

    FFHQ pads the frame by reflection where the quad leaves it, then blends each padded pixel
    towards a blurred copy (fully inside the padding, fading out a third of the pad width into
    the frame) and towards the image's median colour (0 at the frame edge, 1 at the pad's outer
    edge). Mirrored faces at the border would otherwise teach the generator ghost faces.

    Speed: the blend weights are piecewise linear in crop coordinates and the blur is a
    low-frequency image, so both are computed on a coarse grid and upsampled, and only the
    rectangle that the padding touches is blended at full resolution.
    """
    size = crop.shape[0]
    height, width = frame_hw
    inv = np.linalg.inv(transform)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float) @ inv.T
    qsize = size / _scale_of(transform)
    border = max(int(np.rint(qsize * 0.1)), 3)
    pads = (max(-np.floor(corners[:, 0].min()) + border, 0),          # left
            max(-np.floor(corners[:, 1].min()) + border, 0),          # top
            max(np.ceil(corners[:, 0].max()) - width + border, 0),    # right
            max(np.ceil(corners[:, 1].max()) - height + border, 0))   # bottom
    if max(pads) <= border - 4:
        return crop  # the quad lies inside the frame: FFHQ pads nothing

    # Everything smooth (weights, blur, median fill) lives on one coarse n x n grid whose cells
    # are ~sigma/1.5 pixels; the blur there is ~1.5 cells wide.
    blur_sigma = 0.02 * size  # FFHQ: qsize * 0.02 source pixels
    n = max(8, int(round(size / max(1.0, blur_sigma / 1.5))))
    cell = size / n
    coords = (np.arange(n, dtype=np.float64) + 0.5) * cell
    gx, gy = np.meshgrid(coords, coords)
    sx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    sy = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]

    def side(dist: np.ndarray, pad: float) -> np.ndarray:
        return dist / pad if pad > 0 else np.where(dist > 0, 1e9, -1e9)

    mask = np.maximum(np.maximum(side(-sx, pads[0]), side(sx - width, pads[2])),
                      np.maximum(side(-sy, pads[1]), side(sy - height, pads[3])))
    w_blur = np.clip(mask * 3.0 + 1.0, 0.0, 1.0).astype(np.float32)
    w_median = np.clip(mask, 0.0, 1.0)[..., None]
    touched = w_blur > 0
    if not touched.any():
        return crop
    rows, cols = np.nonzero(touched.any(axis=1))[0], np.nonzero(touched.any(axis=0))[0]
    y0, y1 = max(0, int((rows[0] - 1) * cell)), min(size, int(np.ceil((rows[-1] + 2) * cell)))
    x0, x1 = max(0, int((cols[0] - 1) * cell)), min(size, int(np.ceil((cols[-1] + 2) * cell)))

    small = cv2.resize(crop, (n, n), interpolation=cv2.INTER_AREA)
    inside = mask < 0
    median = np.median(small[inside] if inside.any() else small.reshape(-1, 3), axis=0)
    blurred = cv2.GaussianBlur(small.astype(np.float32), (0, 0), blur_sigma / cell,
                               borderType=cv2.BORDER_REFLECT_101)
    # where w_median > 0, w_blur == 1: the target there is blur faded towards the median
    target = np.clip(np.rint(blurred + (median - blurred) * w_median), 0, 255).astype(np.uint8)

    def upsample(img: np.ndarray) -> np.ndarray:
        """Resample a coarse grid image onto the region's full-resolution pixels."""
        # m maps coarse pixels onto region pixels (OpenCV inverts it to sample)
        m = np.array([[cell, 0, 0.5 * cell - 0.5 - x0], [0, cell, 0.5 * cell - 0.5 - y0]])
        return cv2.warpAffine(img, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    weight = upsample(w_blur)
    region = np.ascontiguousarray(crop[y0:y1, x0:x1])
    # cv2.blendLinear: a * wa + b * wb per pixel, on uint8 (fast, threaded)
    out = crop.copy()
    out[y0:y1, x0:x1] = cv2.blendLinear(region, upsample(target), 1.0 - weight, weight)
    return out


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = 1024,
               padding: str = "ffhq") -> tuple[np.ndarray, np.ndarray]:
    """One frame's FFHQ crop: (size, size, 3) uint8 RGB and its 3x3 source->crop transform."""
    transform = quad_transform(quad_from_landmarks(landmarks), size)
    return warp_crop(frame, transform, size, padding), transform


# ----------------------------------------------------------------------------------- paste-back
def face_mask(size: int, crop_landmarks: np.ndarray | None = None, feather: float = 0.08,
              grow: float = 0.04) -> np.ndarray:
    """A soft (size, size) float32 mask in [0, 1] of the face region of an aligned crop.

    With ``crop_landmarks`` (478, 2+) it is the face-oval hull grown by ``grow`` * size; without,
    a fixed ellipse that covers the face of any FFHQ-aligned crop (forehead to chin). ``feather``
    is the width of the soft edge as a fraction of ``size``: pasted edges must be soft or the
    seam shows where generated and real pixels meet.
    """
    mask = np.zeros((size, size), np.float32)
    if crop_landmarks is not None:
        hull = cv2.convexHull(np.asarray(crop_landmarks)[list(FACE_OVAL), :2].astype(np.float32))
        center = hull.reshape(-1, 2).mean(axis=0)
        grown = center + (hull.reshape(-1, 2) - center) * (1.0 + grow * 2.0)
        cv2.fillConvexPoly(mask, np.rint(grown - 0.5).astype(np.int32), 1.0, lineType=cv2.LINE_AA)
    else:
        cv2.ellipse(mask, (size // 2, int(size * 0.53)), (int(size * 0.36), int(size * 0.44)), 0,
                    0, 360, 1.0, thickness=-1, lineType=cv2.LINE_AA)
    if feather > 0:
        sigma = feather * size / 2.0
        # erode first so the soft edge lies inside the region instead of spilling outside it
        k = max(1, int(round(sigma)))
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return mask


def paste_back(frame: np.ndarray, crop: np.ndarray, transform: np.ndarray,
               feather: float = 0.08, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend an aligned (S, S, 3) uint8 crop back into its (H, W, 3) uint8 source frame.

    ``transform`` is the source->crop matrix recorded at alignment; ``mask`` (S, S) in [0, 1]
    defaults to ``face_mask(S, feather=feather)``. Only the frame's region under the crop is
    touched. Returns a new (H, W, 3) uint8 array.
    """
    size = crop.shape[0]
    if crop.shape[:2] != (size, size):
        raise ValueError(f"crop must be square, got {crop.shape}")
    if mask is None:
        mask = face_mask(size, feather=feather)
    inv = np.linalg.inv(transform)  # crop -> source
    roi = _roi_for(transform, (size, size), frame.shape, margin=2)
    x0, y0, x1, y1 = roi
    # crop -> roi-local source coordinates
    to_roi = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], float) @ inv
    layers = np.dstack([crop.astype(np.float32), mask.astype(np.float32)[..., None]])
    layers, local = _prefilter(layers, to_roi, (0, 0, size, size))
    warped = cv2.warpAffine(layers, to_cv2(local), (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = np.clip(warped[..., 3:4], 0.0, 1.0)
    out = frame.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region * (1.0 - alpha) + warped[..., :3] * alpha
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
