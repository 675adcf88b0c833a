"""Can Qt open a window here? Asked before Qt is started, because Qt's answer to a platform
plugin that cannot load is an abort (a core dump), not an error a program can catch.

PyQt6's wheels bring Qt but not the X11 libraries its `xcb` plugin links to; desktop installs
often lack a few (libxcb-cursor0 above all, needed since Qt 6.5). The check runs the dynamic
linker's own listing (`ldd`) on the plugin Qt would load, and names what is missing, with the
Debian/Ubuntu package of each (`installers/README.md` has the other distributions).

    python -m gui.systemcheck                    # one line: what is wrong, or "ok"
    python -m gui.systemcheck --debian-packages  # the Debian packages to install (none: an empty line)
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# library -> Debian/Ubuntu package, for the libraries Qt's plugins link to that a desktop or a
# server install may lack (the `xcb` plugin's first)
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
}
# what each platform needs to reach a screen
_DISPLAY_VARIABLE = {"xcb": "DISPLAY", "wayland": "WAYLAND_DISPLAY"}


def platforms_to_try() -> list[str]:
    """The platform plugins Qt will try, in order: QT_QPA_PLATFORM's list ('wayland;xcb', a
    plugin's options after ':'), else Qt 6's default on Linux: wayland first in a Wayland session,
    then xcb."""
    chosen = os.environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return [name.split(":", 1)[0].strip() for name in chosen.split(";") if name.strip()]
    if os.environ.get("XDG_SESSION_TYPE") == "wayland" and os.environ.get("WAYLAND_DISPLAY"):
        return ["wayland", "xcb"]
    return ["xcb"]


def plugin_path(platform: str) -> Path | None:
    """PyQt6's platform plugin file for `platform` (libq<platform>.so), if it has one."""
    try:
        import PyQt6
    except ImportError:
        return None
    path = Path(PyQt6.__file__).resolve().parent / "Qt6" / "plugins" / "platforms" / f"libq{platform}.so"
    return path if path.exists() else None


def missing_libraries(plugin: Path) -> list[str]:
    """The shared libraries `plugin` needs (directly or through Qt's own) that the dynamic linker
    cannot find: all of them from `ldd`; without ldd, the first that dlopen() names."""
    ldd = shutil.which("ldd")
    if ldd:
        env = None
        if getattr(sys, "frozen", False):
            # the standalone app loads the libraries it carries before the system's, but gives the
            # programs it starts the user's library path (installers/app_entry.py): ldd is told
            env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
                filter(None, [sys._MEIPASS, os.environ.get("LD_LIBRARY_PATH")]))}
        try:
            listing = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30, env=env)
        except (OSError, subprocess.SubprocessError):
            listing = None
        if listing is not None:
            missing = set(re.findall(r"^\s*(\S+) => not found", listing.stdout, re.MULTILINE))
            # a library that is there but cannot be loaded (truncated, another architecture)
            missing.update(Path(name).name for name in
                           re.findall(r"error while loading shared libraries: (\S+?):", listing.stdout + listing.stderr))
            return sorted(missing)
    try:
        ctypes.CDLL(str(plugin))
    except OSError as error:
        found = re.match(r"(\S+?): cannot open shared object file", str(error))
        return [found.group(1) if found else str(error)]
    return []


def debian_packages(libraries: list[str]) -> list[str]:
    return sorted({DEBIAN_PACKAGES[name] for name in libraries if name in DEBIAN_PACKAGES})


def _blocked(platform: str) -> tuple[str, list[str], str] | None:
    """(why, missing libraries, what to do) when `platform` cannot open a window here; None when
    it can."""
    variable = _DISPLAY_VARIABLE.get(platform)
    if variable and not os.environ.get(variable):
        return (f"no display to open the window on ({variable} is not set)", [],
                "run it in a desktop session, or render offscreen: bachbridge gui --screenshot window.png")
    plugin = plugin_path(platform)
    if plugin is None:
        return f"PyQt6 has no {platform!r} platform plugin", [], "reinstall PyQt6 (make venv)"
    missing = missing_libraries(plugin)
    if missing:
        packages = debian_packages(missing)
        todo = (f"install {' '.join(packages)} (Debian/Ubuntu: sudo apt-get install {' '.join(packages)}; "
                "`make run` does it; other systems: installers/README.md)" if packages
                else "install the packages that provide them (installers/README.md)")
        return f"Qt's {platform} platform plugin cannot load: missing {', '.join(missing)}", missing, todo
    return None


def window_problem() -> tuple[str, list[str]] | None:
    """None when Qt can open its window here (always on macOS and Windows, whose wheels carry
    what they need); else (one line saying what is wrong and what to do, the libraries missing)."""
    if not sys.platform.startswith("linux"):
        return None
    blocked = []
    for platform in platforms_to_try():
        why = _blocked(platform)
        if why is None:
            return None
        blocked.append(why)
    # a missing library is what a user can fix: say that one (xcb's, when both plugins lack some)
    why, missing, todo = next((block for block in reversed(blocked) if block[1]), blocked[0])
    return f"{why}; {todo}", missing


def packages_to_install() -> list[str]:
    """The Debian packages of the libraries missing for the plugins Qt would try (with a display
    or not: `make run` installs them before it matters)."""
    if not sys.platform.startswith("linux"):
        return []
    plugins = [plugin_path(platform) for platform in platforms_to_try()]
    return debian_packages([name for plugin in plugins if plugin for name in missing_libraries(plugin)])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--debian-packages"]:
        print(" ".join(packages_to_install()))
        return 0
    problem = window_problem()
    print(problem[0] if problem else "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
