"""A real X server for the window's tests: Xvfb on a display of its own, and what an X client
sees on it (the top-level windows by name, whether one is mapped, its pixels), read through
libX11 itself, not through Qt: what a user's screen would show."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess

import numpy as np

IS_VIEWABLE = 2        # XWindowAttributes.map_state: mapped, and every ancestor too
Z_PIXMAP, ALL_PLANES = 2, 0xFFFFFFFF


class Xvfb:
    """Xvfb on the first free display (it picks it: -displayfd); `display` is ':N'."""

    def __init__(self, size: tuple[int, int] = (1600, 1000)):
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.close()
            raise RuntimeError(f"Xvfb did not start: {self.proc.stderr.read().decode(errors='replace')[-500:]}")
        self.display = f":{number}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def have_xvfb() -> bool:
    return shutil.which("Xvfb") is not None


class _WindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
                ("root", ctypes.c_ulong), ("class_", ctypes.c_int), ("bit_gravity", ctypes.c_int),
                ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int),
                ("backing_planes", ctypes.c_ulong), ("backing_pixel", ctypes.c_ulong),
                ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong), ("map_installed", ctypes.c_int),
                ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
                ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p)]


class _Image(ctypes.Structure):   # XImage, as far as the pixels (its function table follows)
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                ("format", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte)),
                ("byte_order", ctypes.c_int), ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int),
                ("bitmap_pad", ctypes.c_int), ("depth", ctypes.c_int), ("bytes_per_line", ctypes.c_int),
                ("bits_per_pixel", ctypes.c_int)]


class XClient:
    """A connection to an X display, to look at its windows."""

    def __init__(self, display: str):
        lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        lib.XOpenDisplay.restype = ctypes.c_void_p
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XDefaultRootWindow.restype = ctypes.c_ulong
        lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        lib.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                                   ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
                                   ctypes.POINTER(ctypes.c_uint)]
        lib.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
        lib.XGetWindowAttributes.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(_WindowAttributes)]
        lib.XGetImage.restype = ctypes.POINTER(_Image)
        lib.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                                  ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
        lib.XDestroyImage.argtypes = [ctypes.POINTER(_Image)]
        lib.XFree.argtypes = [ctypes.c_void_p]
        lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._display = lib.XOpenDisplay(display.encode())
        if not self._display:
            raise RuntimeError(f"cannot open X display {display}")

    def windows(self) -> dict[str, int]:
        """{name: window} of the named windows on the screen (the first of each name, depth first)."""
        lib, found = self._lib, {}

        def walk(window: int) -> None:
            name = ctypes.c_char_p()
            if lib.XFetchName(self._display, window, ctypes.byref(name)) and name.value:
                found.setdefault(name.value.decode(errors="replace"), window)
                lib.XFree(name)
            root, parent = ctypes.c_ulong(), ctypes.c_ulong()
            children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
            if lib.XQueryTree(self._display, window, ctypes.byref(root), ctypes.byref(parent),
                              ctypes.byref(children), ctypes.byref(count)):
                kids = [children[k] for k in range(count.value)]
                if children:
                    lib.XFree(children)
                for kid in kids:
                    walk(kid)
        walk(lib.XDefaultRootWindow(self._display))
        return found

    def attributes(self, window: int) -> _WindowAttributes:
        attributes = _WindowAttributes()
        if not self._lib.XGetWindowAttributes(self._display, window, ctypes.byref(attributes)):
            raise RuntimeError(f"no attributes for window {window:#x}")
        return attributes

    def viewable(self, window: int) -> bool:
        return self.attributes(window).map_state == IS_VIEWABLE

    def pixels(self, window: int) -> np.ndarray:
        """The window's pixels as the X server has them: (height, width, 3) RGB, uint8."""
        attributes = self.attributes(window)
        image = self._lib.XGetImage(self._display, window, 0, 0, attributes.width, attributes.height,
                                    ALL_PLANES, Z_PIXMAP)
        if not image:
            raise RuntimeError(f"XGetImage failed on window {window:#x}")
        try:
            im = image.contents
            if im.bits_per_pixel != 32:
                raise RuntimeError(f"{im.bits_per_pixel} bits per pixel: only 32 (Xvfb's 24-bit depth) is read")
            raw = np.ctypeslib.as_array(im.data, shape=(im.height * im.bytes_per_line,)).copy()
            rows = raw.reshape(im.height, im.bytes_per_line)[:, : im.width * 4].reshape(im.height, im.width, 4)
            return rows[:, :, 2::-1].copy()   # little-endian BGRX -> RGB
        finally:
            self._lib.XDestroyImage(image)

    def close(self) -> None:
        if self._display:
            self._lib.XCloseDisplay(self._display)
            self._display = None


# libraries hidden from the dynamic linker: an overlay's whiteout over each path in $HIDE, in a
# mount namespace of the caller's own (unshare -m), then the command given after the script
_HIDE_AND_RUN = r"""
set -e
dirs=
for path in $HIDE; do
    dir=$(dirname "$(realpath "$path")")
    up=$SCRATCH/up$(echo "$dir" | tr / _)
    mkdir -p "$up" "$up.work"
    for name in "$(basename "$path")" "$(basename "$(realpath "$path")")"; do
        [ -e "$up/$name" ] || mknod "$up/$name" c 0 0    # an overlay's whiteout: the file is gone
    done
    case " $dirs " in *" $dir "*) ;; *) dirs="$dirs $dir" ;; esac
done
for dir in $dirs; do
    up=$SCRATCH/up$(echo "$dir" | tr / _)
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$up,workdir=$up.work" "$dir"
done
set +e
"$@"
"""


def xcb_libraries_desktops_lack() -> list[str]:
    """The paths of libxcb-cursor.so.0 and libxcb-icccm.so.4 as Qt's xcb plugin loads them here
    (desktops often lack them)."""
    from gui.systemcheck import plugin_path

    listing = subprocess.run(["ldd", str(plugin_path("xcb"))], capture_output=True, text=True).stdout
    paths = [line.split("=>")[1].split("(")[0].strip() for line in listing.splitlines()
             if line.strip().startswith(("libxcb-cursor.so.0 ", "libxcb-icccm.so.4 "))]
    assert len(paths) == 2, listing
    return paths


def can_hide_libraries() -> bool:
    """Whether a mount namespace of our own can be made here (unshare -m needs root)."""
    return bool(shutil.which("unshare")) and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def run_without(libraries: list[str], command: list[str], env: dict, scratch, cwd=None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """`command` run with `libraries` hidden from it (see `_HIDE_AND_RUN`); `scratch`: a folder
    for the overlays."""
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", _HIDE_AND_RUN, "sh",
                           *map(str, command)], cwd=cwd, env={**env, "HIDE": " ".join(libraries),
                                                              "SCRATCH": str(scratch)},
                          capture_output=True, text=True, timeout=timeout)
