"""The window's panels, one module each (or one for a few closely related): every panel owns its
widgets, says what happens through signals, asks for what it needs through callables, and
declares the knobs its controls are bound to (`form.Knob`). The window (gui.window) assembles
them and wires them to the `LiveSession`."""
