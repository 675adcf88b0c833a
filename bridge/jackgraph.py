"""The JACK graph as seen from outside: which MIDI ports exist and what is connected to what.

python-rtmidi opens ports but cannot say who is connected to them, nor connect two other
programs' ports. This module asks libjack directly (ctypes, no compiled code of ours) through a
client that is opened but never activated: it takes no part in JACK's process cycle (no thread
woken every period), it only reads the graph and changes connections.

    with JackGraph() as graph:          # PortError when no JACK server runs (never starts one)
        graph.ports(r"bachbridge in$")  # full port names matching a regular expression
        graph.connections("daw:out")    # full names of the ports connected to it
        graph.connect("seq:out", "bachbridge-01:bachbridge in")

A server that went away leaves the client dead: `alive()` says so (libjack told it so, or the
server's socket is gone); other calls on it then give what the dead client last knew.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading

from bridge.ports import PortError, _jack_socket_present, jack_server_name
from bridge.scheduling import short_slice_for_new_threads

_NO_START_SERVER = 0x01      # JackNoStartServer
_PORT_IS_INPUT, _PORT_IS_OUTPUT = 0x1, 0x2
_MIDI_TYPE = b"8 bit raw midi"

_lib = None
_lib_lock = threading.Lock()
_SHUTDOWN_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class JackGraphError(PortError):
    """No libjack, no server, or a call the server refused: one-line reason."""


def _libjack():
    global _lib
    with _lib_lock:
        if _lib is None:
            name = ctypes.util.find_library("jack") or "libjack.so.0"
            try:
                lib = ctypes.CDLL(name)
            except OSError as error:
                raise JackGraphError(f"libjack not found ({error})") from None
            vp, cp = ctypes.c_void_p, ctypes.c_char_p
            lib.jack_client_open.restype = vp
            lib.jack_client_open.argtypes = [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            lib.jack_client_close.argtypes = [vp]
            lib.jack_get_ports.restype = ctypes.POINTER(cp)
            lib.jack_get_ports.argtypes = [vp, cp, cp, ctypes.c_ulong]
            lib.jack_port_by_name.restype = vp
            lib.jack_port_by_name.argtypes = [vp, cp]
            lib.jack_port_get_all_connections.restype = ctypes.POINTER(cp)
            lib.jack_port_get_all_connections.argtypes = [vp, vp]
            lib.jack_connect.argtypes = [vp, cp, cp]
            lib.jack_disconnect.argtypes = [vp, cp, cp]
            lib.jack_free.argtypes = [vp]
            lib.jack_get_sample_rate.restype = ctypes.c_uint32
            lib.jack_get_sample_rate.argtypes = [vp]
            lib.jack_get_buffer_size.restype = ctypes.c_uint32
            lib.jack_get_buffer_size.argtypes = [vp]
            lib.jack_is_realtime.argtypes = [vp]
            lib.jack_on_shutdown.argtypes = [vp, vp, vp]
            lib.jack_port_uuid.restype = ctypes.c_uint64
            lib.jack_port_uuid.argtypes = [vp]
            lib.jack_frame_time.restype = ctypes.c_uint32
            lib.jack_frame_time.argtypes = [vp]
            lib.jack_transport_start.argtypes = [vp]
            lib.jack_transport_stop.argtypes = [vp]
            lib.jack_transport_locate.argtypes = [vp, ctypes.c_uint32]
            lib.jack_client_real_time_priority.argtypes = [vp]
            _lib = lib
        return _lib


def _names(lib, array) -> list[str]:
    """A NULL-terminated char** from libjack as str, freed."""
    if not array:
        return []
    try:
        out = []
        i = 0
        while array[i] is not None:
            out.append(array[i].decode("utf-8", "replace"))
            i += 1
        return out
    finally:
        lib.jack_free(ctypes.cast(array, ctypes.c_void_p))


class JackGraph:
    """A passive JACK client for reading and changing the graph (see the module docstring).
    Thread-safe: calls are serialized by a lock, none of them waits on the process cycle."""

    def __init__(self, client_name: str = "bachbridge-graph"):
        if not _jack_socket_present(jack_server_name()):
            raise JackGraphError(f"no JACK server ({jack_server_name()!r}) is running")
        lib = _libjack()
        status = ctypes.c_int(0)
        with short_slice_for_new_threads():   # its notification thread, like every JACK client of ours
            client = lib.jack_client_open(client_name.encode(), _NO_START_SERVER, ctypes.byref(status))
        if not client:
            raise JackGraphError(f"no JACK server ({jack_server_name()!r}) accepts clients "
                                 f"(status {status.value:#x})")
        self._lib, self._client, self._lock = lib, client, threading.Lock()
        self._server = jack_server_name()
        # libjack says so, from its own thread, as soon as the server is gone (also when a new
        # one of the same name is up again before anyone looked)
        self._shut_down = threading.Event()
        self._on_shutdown = _SHUTDOWN_CALLBACK(lambda _arg: self._shut_down.set())
        lib.jack_on_shutdown(client, ctypes.cast(self._on_shutdown, ctypes.c_void_p), None)

    def _checked(self):
        if self._client is None:
            raise JackGraphError("the JACK graph client is closed")
        return self._client

    def alive(self) -> bool:
        """False once the server is gone (libjack said so, or its socket was removed) or this
        client was closed."""
        return self._client is not None and not self._shut_down.is_set() and _jack_socket_present(self._server)

    def ports(self, pattern: str = "", *, inputs: bool = False, outputs: bool = False) -> list[str]:
        """Full names of MIDI ports whose name matches the regular expression `pattern` (search,
        as re.search); only inputs (ports that receive) or only outputs when asked."""
        flags = (_PORT_IS_INPUT if inputs else 0) | (_PORT_IS_OUTPUT if outputs else 0)
        with self._lock:
            found = _names(self._lib, self._lib.jack_get_ports(self._checked(), None, _MIDI_TYPE, flags))
        regex = re.compile(pattern)
        return [name for name in found if regex.search(name)]

    def connections(self, port: str) -> list[str]:
        """Full names of the ports connected to `port` (a full name); [] when it does not exist."""
        with self._lock:
            return self._connections(self._checked(), port)

    def connected_ports(self, port: str) -> set[tuple[str, int]]:
        """The ports connected to `port`, as (full name, JACK's id of that port): a program that
        died and came back under the same name has ports of new ids."""
        with self._lock:
            client = self._checked()
            found = set()
            for name in self._connections(client, port):
                handle = self._lib.jack_port_by_name(client, name.encode())
                if handle:
                    found.add((name, int(self._lib.jack_port_uuid(handle))))
            return found

    def _connections(self, client, port: str) -> list[str]:
        handle = self._lib.jack_port_by_name(client, port.encode())
        if not handle:
            return []
        return _names(self._lib, self._lib.jack_port_get_all_connections(client, handle))

    def connect(self, source: str, destination: str) -> None:
        """Connect an output port to an input port (full names); connected already is fine."""
        with self._lock:
            result = self._lib.jack_connect(self._checked(), source.encode(), destination.encode())
        if result not in (0, 17):  # 17: EEXIST
            raise JackGraphError(f"cannot connect {source!r} -> {destination!r} (JACK error {result})")

    def disconnect(self, source: str, destination: str) -> None:
        with self._lock:
            result = self._lib.jack_disconnect(self._checked(), source.encode(), destination.encode())
        if result != 0:
            raise JackGraphError(f"cannot disconnect {source!r} -> {destination!r} (JACK error {result})")

    def frame_time(self) -> int:
        """JACK's running count of frames, now (wraps at 2**32)."""
        with self._lock:
            return int(self._lib.jack_frame_time(self._checked()))

    def sample_rate(self) -> int:
        with self._lock:
            return int(self._lib.jack_get_sample_rate(self._checked()))

    def period(self) -> int:
        with self._lock:
            return int(self._lib.jack_get_buffer_size(self._checked()))

    def transport(self, rolling: bool, frame: int | None = None) -> None:
        """Start or stop JACK's transport (what a DAW's play button does), after moving it to
        `frame` when given."""
        with self._lock:
            client = self._checked()
            if frame is not None:
                self._lib.jack_transport_locate(client, int(frame))
            (self._lib.jack_transport_start if rolling else self._lib.jack_transport_stop)(client)

    def realtime_priority(self) -> int | None:
        """The realtime priority JACK gives its clients' process threads; None when the server
        does not run realtime."""
        with self._lock:
            client = self._checked()
            if not self._lib.jack_is_realtime(client):
                return None
            return int(self._lib.jack_client_real_time_priority(client))

    def close(self) -> None:
        """Close the client (safe to call twice). A client whose server died is only forgotten:
        closing it would wait on a socket nobody answers."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None and not self._shut_down.is_set() and _jack_socket_present(self._server):
            self._lib.jack_client_close(client)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
