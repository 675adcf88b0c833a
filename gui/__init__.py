"""The PyQt6 control window. It drives `bridge`; `bridge` knows nothing of it."""
