"""What a parser knows about the file it parses, besides its lines."""

from __future__ import annotations

from dataclasses import dataclass

from .source import Wrapping


@dataclass(frozen=True)
class FileContext:
    path: str  # as given by the user; goes to the `file` column
    process: str  # client process name when the lines do not say it (pm2 app name from the file name)
    wrapping: Wrapping
    first_year: int  # year of the first line, for formats whose time has no year
    first_month: int  # month of the first line (1-12), to detect a Dec -> Jan rollover
