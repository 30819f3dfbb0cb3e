"""Zoom and pan of an image view (pure geometry, no Qt): fit, 1:1, zoom about a point, pan.

The portrait canvas and the preview share one :class:`ZoomState`, so both show the same part of the
face at the same magnification. The state is kept relative to the image (the centre as a fraction of
its width and height, the scale in screen pixels per image pixel), so a preview frame of another size
than the portrait (the pixel model's crop) still lines up.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Zoom factor of one wheel notch or one Ctrl +/- press.
ZOOM_STEP = 1.25
#: Zoom limits in screen pixels per image pixel.
MIN_SCALE = 0.05
MAX_SCALE = 16.0
#: From this zoom on (screen pixels per image pixel) images are drawn without smoothing: the pixels show.
PIXELATED_SCALE = 2.0


@dataclass
class ZoomState:
    """How an image sits in a view: ``fit`` (the whole image, centred) or ``scale`` about ``center``."""

    fit: bool = True
    scale: float = 1.0  # screen pixels per image pixel (when not fit)
    center: tuple[float, float] = (0.5, 0.5)  # the view's centre, as a fraction of the image's width and height

    def fit_scale(self, view: tuple[float, float], image: tuple[int, int]) -> float:
        """The scale at which the whole ``image`` (w, h) fits the ``view`` (w, h)."""
        return min(view[0] / max(1, image[0]), view[1] / max(1, image[1]))

    def current_scale(self, view: tuple[float, float], image: tuple[int, int]) -> float:
        return self.fit_scale(view, image) if self.fit else self.scale

    def rect(self, view: tuple[float, float], image: tuple[int, int]) -> tuple[float, float, float, float]:
        """Where the image is drawn in the view: ``(x, y, width, height)`` in view pixels."""
        scale = self.current_scale(view, image)
        w, h = image[0] * scale, image[1] * scale
        if self.fit:
            return (view[0] - w) / 2, (view[1] - h) / 2, w, h
        cx, cy = self.center
        return view[0] / 2 - cx * w, view[1] / 2 - cy * h, w, h

    # ---------------------------------------------------------------- changes
    def set_fit(self) -> None:
        self.fit, self.center = True, (0.5, 0.5)

    def set_scale(self, scale: float, view: tuple[float, float], image: tuple[int, int],
                  anchor: tuple[float, float] | None = None) -> None:
        """Zoom to ``scale`` keeping the image point under ``anchor`` (view pixels; default: the centre) still."""
        anchor = (view[0] / 2, view[1] / 2) if anchor is None else anchor
        x, y, w, h = self.rect(view, image)
        fx, fy = (anchor[0] - x) / max(w, 1e-9), (anchor[1] - y) / max(h, 1e-9)  # image fraction under the anchor
        scale = min(MAX_SCALE, max(MIN_SCALE, float(scale)))
        nw, nh = image[0] * scale, image[1] * scale
        # choose the centre so that fraction (fx, fy) lands on the anchor again
        self.center = (fx - (anchor[0] - view[0] / 2) / nw, fy - (anchor[1] - view[1] / 2) / nh)
        self.scale, self.fit = scale, False

    def zoom(self, factor: float, view: tuple[float, float], image: tuple[int, int],
             anchor: tuple[float, float] | None = None) -> None:
        """Multiply the current scale by ``factor`` about ``anchor``."""
        self.set_scale(self.current_scale(view, image) * factor, view, image, anchor)

    def pan(self, dx: float, dy: float, view: tuple[float, float], image: tuple[int, int]) -> None:
        """Move the image by ``(dx, dy)`` view pixels (drag direction)."""
        if self.fit:
            self.scale, self.fit = self.fit_scale(view, image), False
        w, h = image[0] * self.scale, image[1] * self.scale
        cx, cy = self.center
        self.center = (min(1.0, max(0.0, cx - dx / max(w, 1e-9))), min(1.0, max(0.0, cy - dy / max(h, 1e-9))))

    def label(self, view: tuple[float, float], image: tuple[int, int]) -> str:
        """"fit · 43 %" or "100 %" (for the view's badge)."""
        percent = round(100 * self.current_scale(view, image))
        return f"fit · {percent} %" if self.fit else f"{percent} %"


def wheel_factor(angle_delta_y: float) -> float:
    """The zoom factor of a wheel turn (120 units = one notch = ``ZOOM_STEP``)."""
    return float(ZOOM_STEP ** (angle_delta_y / 120.0))
