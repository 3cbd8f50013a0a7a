"""YUV 4:2:0 (NV12) to RGB as ffmpeg converts it, on any torch device.

The GPU decoder (`workers.nvcodec`) hands out frames in NV12, the decoder's own layout: a full
luma plane, then one half-size plane of interleaved U and V. NVDEC's own RGB conversion takes
BT.709 for an untagged HD video, where ffmpeg (the other decoder) takes BT.601: on an H200 the
two differed by 8.8 levels on average, 46 at most (docs/gpu-checks/2026-12-04-h200-1-nvcodec-
probe.json). So the conversion is done here, with the rules ffmpeg follows for `-pix_fmt rgb24`:

- the matrix the stream is tagged with (BT.709, BT.601, BT.2020); BT.601 when untagged;
- limited range (16-235) unless the stream is tagged full range (or is `yuvj420p`);
- each chroma sample stands for its 2x2 pixels (no interpolation).

Measured against ffmpeg's own rgb24 on H.264 clips: untagged, tagged BT.709 and full range all
within 0.7 levels on average, 3 at most (tests/test_nvcodec.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Luma weights (Kr, Kb) of each matrix, by ffmpeg's colorspace names.
MATRICES: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}
#: ffmpeg's names for the colour matrices, to ours; unspecified (and "reserved") is BT.601, as ffmpeg takes it.
_TAGS = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "bt2020nc": "bt2020", "bt2020_ncl": "bt2020",
         "unknown": "bt601", "unspecified": "bt601", "reserved": "bt601", "": "bt601"}
#: The pixel formats converted here: 8-bit 4:2:0 (NVDEC gives NV12 for both).
PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p", "nv12"})


@dataclass(frozen=True)
class Colour:
    """How a stream's YUV turns into RGB.

    Attributes:
        matrix: A key of `MATRICES`.
        full_range: 0-255 luma and chroma (else 16-235 and 16-240).
    """

    matrix: str = "bt601"
    full_range: bool = False


def colour_of(colorspace: str | None, color_range: str | None, pix_fmt: str | None) -> Colour | str:
    """The conversion ffmpeg applies to a stream, from its tags (PyAV's names, lower case).

    Returns:
        The `Colour`, or why this module cannot convert it as ffmpeg does (a sentence part:
        "10-bit yuv420p10le", "the fcc colour matrix").
    """
    fmt = (pix_fmt or "").lower()
    if fmt not in PIXEL_FORMATS:
        return f"pixel format {fmt or 'unknown'} (only 8-bit 4:2:0)"
    tag = (colorspace or "").lower()
    if tag not in _TAGS:
        return f"the {tag} colour matrix"
    full = fmt == "yuvj420p" or (color_range or "").lower() in ("pc", "jpeg", "full")
    return Colour(_TAGS[tag], full)


def nv12_to_rgb(nv12: torch.Tensor, height: int, width: int, colour: Colour = Colour()) -> torch.Tensor:
    """NV12 frames to RGB, on the tensor's device: one frame, or a batch at once (a few kernels
    for the batch rather than for each frame).

    Args:
        nv12: uint8, ([frames,] rows * 3 // 2, columns) (a trailing dimension of 1 is allowed):
            the luma rows, then the chroma rows with U and V interleaved, of a surface at least
            the picture's size (a decoder's may be taller, 1088 rows for 1080: cropped here).
            Height and width are even.
        height: Rows of the picture.
        width: Columns of the picture.
        colour: The stream's matrix and range (`colour_of`).

    Returns:
        uint8 ([frames,] height, width, 3), RGB.
    """
    frames = nv12.squeeze(-1) if nv12.dim() >= 3 and nv12.shape[-1] == 1 else nv12
    single = frames.dim() == 2
    planes = frames.unsqueeze(0) if single else frames  # (frames, rows, columns)
    surface = planes.shape[1] * 2 // 3
    y = planes[:, :height, :width].float()
    uv = planes[:, surface:surface + height // 2, :width].reshape(-1, height // 2, width // 2, 2).float() - 128.0
    uv = uv.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    u, v = uv[..., 0], uv[..., 1]
    kr, kb = MATRICES[colour.matrix]
    kg = 1.0 - kr - kb
    if colour.full_range:
        luma, chroma = y, 1.0
    else:
        luma, chroma = (y - 16.0) * (255.0 / 219.0), 255.0 / 224.0
    red = luma + (chroma * 2.0 * (1.0 - kr)) * v
    blue = luma + (chroma * 2.0 * (1.0 - kb)) * u
    green = luma - (chroma * 2.0 * kb * (1.0 - kb) / kg) * u - (chroma * 2.0 * kr * (1.0 - kr) / kg) * v
    rgb = torch.stack([red, green, blue], dim=-1).round_().clamp_(0, 255).to(torch.uint8)
    return rgb[0] if single else rgb
