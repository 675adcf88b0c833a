"""bachbridge runtime: engines, numba kernels, MIDI file and port I/O, batch conversion, CLI.

Data flows one way: port or file -> events -> grid -> engine -> grid -> events -> port or file.
This package never imports torch or PyQt6.
"""
__version__ = "0.1.0"
