# Stands in for PyInstaller's own hook of PyQt6.QtGui (installers/bachbridge.spec puts this folder
# on its hookspath): the same plugins less a few whose libraries would come along with them.
# Left out here, before PyInstaller follows the plugins' links, so their libraries stay out too.
from pathlib import Path

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

# plugin names, without the platform's "lib" and suffix
LEFT_OUT = {
    # the GTK theme: it would load the user's GTK against the build machine's glib, cairo and
    # pango bundled beside it; the window sets its own style, and file dialogs are Qt's own
    # (or the desktop portal's)
    "qgtk3",
    # PDF images (QtPdf, and QtNetwork with it), a VNC server and TUIO touch (QtNetwork)
    "qpdf",
    "qvnc",
    "qtuiotouchplugin",
}


def plugin_name(path: str) -> str:
    stem = Path(path).name.split(".")[0]
    return stem[3:] if stem.startswith("lib") else stem


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [entry for entry in binaries if plugin_name(entry[0]) not in LEFT_OUT]
