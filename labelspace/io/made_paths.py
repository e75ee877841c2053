"""What a run made inside an output folder (links, label files, the folders holding them), so that a failed
run removes exactly that, newest first, and never a file it did not make."""
from __future__ import annotations

from pathlib import Path


class MadePaths:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[Path] = []

    def add(self, path: Path) -> None:
        self.paths.append(path)

    def make_dirs(self, folder: Path) -> None:
        """``folder`` and its missing parents inside the root, each recorded."""
        missing = [d for d in (folder, *folder.parents) if not d.exists() and (d == self.root or self.root in d.parents)]
        folder.mkdir(parents=True, exist_ok=True)
        self.paths.extend(reversed(missing))

    def undo(self) -> None:
        """Remove every recorded link and file, and every recorded folder left empty, newest first."""
        for path in reversed(self.paths):
            try:
                if path.is_symlink() or path.is_file():
                    path.unlink()
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            except OSError:
                pass
        self.paths = []
