"""The live modes' players, by `LiveConfig.mode`."""
from bridge.live.note_mode import NoteMode
from bridge.live.phrase_mode import PhraseMode
from bridge.live.respond_mode import RespondMode

PLAYERS = {NoteMode.mode: NoteMode, PhraseMode.mode: PhraseMode, RespondMode.mode: RespondMode}
