"""A small plot of the annealing schedule: the share of free notes resampled at each Gibbs step,
p(n) = max(pmin, pmax - (pmax - pmin) * n / (alpha * N)), computed by the sampler's own function."""
from __future__ import annotations

from PyQt6.QtCore import QPointF, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QPainter, QPainterPath, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from bridge.kernels import yao_mask_prob
from bridge.settings import Settings
from gui import theme


def schedule(settings: Settings) -> list[float]:
    """p at each of the settings' Gibbs steps."""
    return [float(yao_mask_prob(n, settings.steps, settings.pmax, settings.pmin, settings.alpha))
            for n in range(settings.steps)]


class SchedulePlot(QWidget):
    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self.values = schedule(settings)
        self.setMinimumSize(160, 70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Annealing schedule: the share of free notes resampled at each Gibbs step "
                        "(starts at pmax, falls to pmin at alpha x steps)")

    def set_settings(self, settings: Settings) -> None:
        self.values = schedule(settings)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(240, 90)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, theme.SUNKEN)
        plot = QRectF(28, 6, max(1, w - 36), max(1, h - 22))
        p.setPen(QPen(theme.GRID, 1))
        for share in (0.0, 0.5, 1.0):
            y = plot.bottom() - share * plot.height()
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        p.setPen(theme.TEXT_DIM)
        for share, label in ((1.0, "1"), (0.5, ".5"), (0.0, "0")):
            y = plot.bottom() - share * plot.height()
            p.drawText(QRectF(0, y - 7, 24, 14), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
        values = self.values
        steps = len(values)
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), 14),
                   Qt.AlignmentFlag.AlignHCenter, f"Gibbs step 1..{steps}")
        if not steps:
            return
        # one bar per step (what each network call resamples), and the line through their tops
        slot = plot.width() / steps
        bar_w = max(1.0, slot * 0.7)
        fill = QColor(theme.ACCENT)
        fill.setAlphaF(0.35)
        path = QPainterPath()
        for n, share in enumerate(values):
            x = plot.left() + n * slot + (slot - bar_w) / 2
            top = plot.bottom() - share * plot.height()
            p.fillRect(QRectF(x, top, bar_w, plot.bottom() - top), fill)
            point = QPointF(x + bar_w / 2, top)
            path.moveTo(point) if n == 0 else path.lineTo(point)
        p.setPen(QPen(theme.ACCENT, 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
