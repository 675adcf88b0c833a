"""The window's look: a dark palette, one stylesheet, and the colours of the four voices.

Every widget takes its colours from here, so the piano roll, the schedule plot and the panels agree.
"""
from __future__ import annotations

from PyQt6.QtGui import QColor, QFont, QPalette
from PyQt6.QtWidgets import QApplication

VOICE_NAMES = ("Melody", "Alto", "Tenor", "Bass")
# melody warm and bright (it is what the player plays), the three generated voices cooler
VOICE_COLOURS = tuple(QColor(c) for c in ("#f2c14e", "#f78154", "#4fb3bf", "#9b7fd4"))

BACKGROUND = QColor("#1b1d23")
PANEL = QColor("#23262e")
SUNKEN = QColor("#15171c")
GRID = QColor("#2c3039")
GRID_STRONG = QColor("#4a5060")
TEXT = QColor("#d7dae0")
TEXT_DIM = QColor("#8a909c")
ACCENT = QColor("#5fa8ff")
DANGER = QColor("#e5484d")
OK = QColor("#46c37b")
WARN = QColor("#f0b429")

STYLESHEET = f"""
QMainWindow, QWidget {{ background: {BACKGROUND.name()}; color: {TEXT.name()}; }}
QGroupBox {{
    background: {PANEL.name()}; border: 1px solid #30343e; border-radius: 6px;
    margin-top: 14px; padding: 8px 6px 6px 6px; font-weight: 600;
}}
QGroupBox::title {{
    subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {TEXT_DIM.name()};
    text-transform: uppercase; letter-spacing: 1px;
}}
QGroupBox QWidget {{ background: transparent; }}
QLabel[role="readout"] {{ font-family: monospace; font-size: 13px; color: {TEXT.name()}; }}
QLabel[role="caption"] {{ color: {TEXT_DIM.name()}; }}
QLabel[role="big"] {{ font-family: monospace; font-size: 20px; font-weight: 600; color: {TEXT.name()}; }}
QAbstractSpinBox, QComboBox, QLineEdit {{
    background: {SUNKEN.name()}; border: 1px solid #363b46; border-radius: 4px; padding: 2px 4px;
    min-height: 20px; selection-background-color: {ACCENT.name()};
}}
QAbstractSpinBox:focus, QComboBox:focus, QLineEdit:focus {{ border-color: {ACCENT.name()}; }}
QAbstractSpinBox[invalid="true"], QComboBox[invalid="true"] {{ border-color: {DANGER.name()}; }}
QComboBox QAbstractItemView {{ background: {SUNKEN.name()}; selection-background-color: {ACCENT.name()}; }}
QPushButton {{
    background: #2f343f; border: 1px solid #3d4350; border-radius: 4px; padding: 4px 10px;
}}
QPushButton:hover {{ background: #383e4b; }}
QPushButton:pressed {{ background: #262a33; }}
QPushButton:disabled {{ color: #5b606b; }}
QPushButton#panic {{
    background: #7a1f23; border: 1px solid {DANGER.name()}; color: white; font-weight: 700;
    padding: 6px 14px;
}}
QPushButton#panic:hover {{ background: #96262b; }}
QSlider::groove:horizontal {{ height: 4px; background: #3a3f4b; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {ACCENT.name()}; border-radius: 2px; }}
QSlider::handle:horizontal {{
    background: {TEXT.name()}; width: 12px; margin: -5px 0; border-radius: 6px;
}}
QProgressBar {{
    background: {SUNKEN.name()}; border: 1px solid #363b46; border-radius: 4px; text-align: center;
    min-height: 16px;
}}
QProgressBar::chunk {{ background: {ACCENT.name()}; border-radius: 3px; }}
QStatusBar {{ background: {PANEL.name()}; color: {TEXT_DIM.name()}; }}
QToolBar {{ background: {PANEL.name()}; border: none; spacing: 6px; padding: 3px; }}
QScrollBar:vertical {{ background: {BACKGROUND.name()}; width: 10px; margin: 0; }}
QScrollBar::handle:vertical {{ background: #3a3f4b; border-radius: 4px; min-height: 30px; }}
QScrollBar::handle:vertical:hover {{ background: #4a5060; }}
QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical {{ height: 0; }}
QScrollBar::add-page:vertical, QScrollBar::sub-page:vertical {{ background: none; }}
QToolTip {{ background: #2b2f38; color: {TEXT.name()}; border: 1px solid #4a5060; }}
QCheckBox::indicator {{
    width: 14px; height: 14px; border: 1px solid #4a5060; border-radius: 3px; background: {SUNKEN.name()};
}}
QCheckBox::indicator:checked {{ background: {ACCENT.name()}; border-color: {ACCENT.name()}; }}
QAbstractSpinBox:disabled, QComboBox:disabled {{ color: #5b606b; background: #1d1f25; border-color: #2a2e37; }}
"""


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark palette (so native parts agree with the stylesheet), then the stylesheet."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND, QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: SUNKEN, QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.Text: TEXT, QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT, QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: QColor("white"), QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT, QPalette.ColorRole.PlaceholderText: TEXT_DIM,
    }
    for role, colour in roles.items():
        palette.setColor(role, colour)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, TEXT_DIM)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, TEXT_DIM)
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSize(max(9, font.pointSize()))
    app.setFont(font)
    app.setStyleSheet(STYLESHEET)
