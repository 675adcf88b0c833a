"""What the live bridge's port watcher uses: a lister that asks about ports without touching the
worker's, and stand-ins for the ports while the JACK server is away (bridge/live/bridge.py)."""
from __future__ import annotations

from bridge.ports import MidiInput, MidiOutput, PortError, _open_rtmidi, _quiet_stderr, find_port


class DeadInput:
    """Stands in for the input while the JACK server is away: nothing comes."""

    def __init__(self, was: MidiInput):
        self.api, self.name, self.connected_to, self.full_name = was.api, was.name, was.connected_to, None

    @staticmethod
    def poll() -> list:
        return []

    def close(self) -> None:
        pass


class DeadOutput:
    """Stands in for the output while the JACK server is away: what is sent goes nowhere."""

    def __init__(self, was: MidiOutput):
        self.api, self.name, self.connected_to = was.api, was.name, was.connected_to
        self.closed = False

    @staticmethod
    def send(message, source: str = "") -> bool:
        return False

    @staticmethod
    def release(source: str = "") -> int:
        return 0

    @staticmethod
    def all_notes_off(channels=()) -> int:
        return 0

    @staticmethod
    def sounding(source: str | None = None) -> dict:
        return {}

    @staticmethod
    def silence(keys) -> int:
        return 0

    def close(self, channels=()) -> None:
        self.closed = True


class PortLister:
    """What the watcher asks about ports, without touching the ports the worker uses: on JACK a
    passive graph client (bridge.jackgraph), elsewhere rtmidi objects of its own."""

    def __init__(self, api: str):
        self.api = api
        self.jack = api == "jack"
        self._graph = None
        self._rtmidi = {}
        self.reopen()

    def reopen(self) -> None:
        self.close()
        if self.jack:
            from bridge.jackgraph import JackGraph

            with _quiet_stderr():
                self._graph = JackGraph("bachbridge-watch")

    def server_alive(self) -> bool:
        return self._graph is not None and self._graph.alive()

    def realtime_priority(self) -> int | None:
        """JACK's clients' realtime priority, None when not realtime (or not JACK)."""
        return self._graph.realtime_priority() if self._graph is not None else None

    def connected_ports(self, port: str) -> set[tuple[str, int]]:
        return self._graph.connected_ports(port)

    def has(self, what: str, target: str) -> bool:
        """Is there a port `target` names (see ports.find_port) that our `what` port can use?"""
        if self.jack:
            names = self._graph.ports(outputs=what == "input", inputs=what == "output")
        else:
            kind = "in" if what == "input" else "out"
            if kind not in self._rtmidi:
                self._rtmidi[kind] = _open_rtmidi(kind, self.api, "bachbridge-watch")
            names = list(self._rtmidi[kind].get_ports())
        try:
            find_port(names, target, what)
        except PortError:
            return False
        return True

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        for client in self._rtmidi.values():
            client.delete()
        self._rtmidi.clear()
