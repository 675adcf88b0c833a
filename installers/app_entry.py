"""The standalone app's entry point (installers/bachbridge.spec): one executable that is the
command line (`bachbridge harmonize ...`, `bachbridge live ...`) and the window (`bachbridge gui`).
Only used frozen; from a checkout or a pip install, `bachbridge` is `bridge.cli:entry` itself.
"""
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for bachbridge."""
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "bachbridge"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "bachbridge" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "bachbridge"


def build_id() -> str:
    """The hash of the runtime's sources that installers/bachbridge.spec wrote into the app."""
    try:
        return (Path(sys._MEIPASS) / "build-id").read_text().strip()
    except (AttributeError, OSError):
        return "unknown"


def set_numba_cache_dir() -> None:
    """Point numba's cache (the kernels' `cache=True`) at a writable per-user folder, one per build.

    numba would otherwise write beside the kernels' sources, inside the app folder (read-only
    when installed system-wide, or inside a signed macOS bundle), or fall back to a folder chosen
    from the current directory. It stamps a frozen app's cache with the executable, which holds
    only PyInstaller's bootloader and this script, not the kernels' sources: without a folder of
    its own, a new build would load the kernels an older one compiled from other sources. Children spawned by the app (speculation,
    the window's bridge, `batch --jobs`) inherit the variable and share the cache."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    user = os.getuid() if hasattr(os, "getuid") else "user"
    for folder in (user_cache_dir() / "numba" / build_id(),
                   Path(tempfile.gettempdir()) / f"bachbridge-numba-{user}" / build_id()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            return


def restore_library_path() -> None:
    """Give the programs the app starts the user's library path, not the app's.

    On Linux, PyInstaller's bootloader puts the app's folder first on LD_LIBRARY_PATH and restarts
    itself; the app keeps loading from there (the dynamic linker read the path when the process
    started). A program of the system that inherited it (the file manager that the window's Reveal
    opens through xdg-open) would load the app's copies of glib and the like instead of its own.
    The app's own children (multiprocessing) run the bootloader again and get it back."""
    if not sys.platform.startswith("linux") or "LD_LIBRARY_PATH" not in os.environ:
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        del os.environ["LD_LIBRARY_PATH"]
    else:
        os.environ["LD_LIBRARY_PATH"] = original


if __name__ == "__main__":
    # first of all: a process spawned by multiprocessing re-runs this executable, and must become
    # that child here rather than parse its arguments as a command line
    multiprocessing.freeze_support()
    if getattr(sys, "frozen", False):
        set_numba_cache_dir()
        restore_library_path()
    # started with no arguments and no terminal (the macOS .app from the Finder, a desktop
    # launcher): the window; from a terminal, the command line's usage as ever
    if len(sys.argv) == 1 and not (sys.stdin and sys.stdin.isatty()):
        sys.argv.append("gui")
    from bridge.cli import entry

    entry()
