"""Files in and out: atomic writes, one-line read errors, and one writer per output folder.

- Writes are atomic (``atomic_write*``: a temp name in the same folder, then ``os.replace``):
  an output file is either complete or absent, never half written. Files get mode
  0666 & ~umask (0644 usually) whatever the writer did (mkstemp makes temp files 0600, and
  some writers, e.g. safetensors, re-create the file).
- Reads go through :func:`reading`: whatever fails while decoding a file (bad bytes, a
  truncated file, the wrong JSON shape, no permission) becomes one :class:`UserError` line
  naming the file and the problem, never a traceback.
- A folder being written is locked (:func:`lock_folder`, :func:`writing_folder`): an
  exclusive ``flock`` on ``<folder>/.actbench.lock``, which holds the writer's pid. A
  second writer gets "<folder> is being written by pid N". The kernel drops the lock when
  its process dies, so a lock file left by a killed run is stale and harmless; a normal
  end removes it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from robustbench_act.errors import UserError, is_user_error

LOCK_NAME = ".actbench.lock"

#: How every table is compressed: zstd halves the per-sample tables against snappy (float
#: values compress poorly either way) at a similar write speed.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 6}


def _umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_folder(path: str | Path) -> Path:
    """``mkdir -p`` that fails with a one-line UserError (a parent is a file, no permission)."""
    path = Path(path)
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                raise UserError(f"cannot create folder {path}: {existing} is a file")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {path}: {exc.strerror or exc}") from exc
    return path


def file_mode() -> int:
    """The mode every output file gets: 0666 & ~umask (0644 usually), like any file a user creates."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode an output folder gets (temp folders are made private by mkdtemp): 0777 & ~umask."""
    return 0o777 & ~_umask()


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename the temp file onto ``path`` (same folder).

    The mode is set after ``writer`` ran (some writers re-create the file), so every
    output has :func:`file_mode`; an OSError while writing is one UserError line.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented, sorted keys) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_frame(path: str | Path, frame: Any) -> Path:
    """Write a pandas DataFrame atomically as .parquet or .csv (by suffix)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return atomic_write(path, lambda p: frame.to_parquet(p, index=False, **PARQUET_OPTIONS))
    if path.suffix == ".csv":
        return atomic_write(path, lambda p: frame.to_csv(p, index=False))
    raise ValueError(f"unsupported table format: {path.suffix}")


# ----------------------------------------------------------------------------- reading


def problem(exc: BaseException) -> str:
    """A short phrase for what went wrong (an OSError's reason, else the first line of the message)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}"[:240] if text else type(exc).__name__


@contextmanager
def reading(path: str | os.PathLike, what: str = "file") -> Iterator[None]:
    """Turn any failure inside the block into ``cannot read <what> <path>: <problem>`` (one line).

    One-line errors raised inside (ours, the corruptions package's) pass through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if is_user_error(exc):
            raise
        raise UserError(f"cannot read {what} {path}: {problem(exc)}") from exc


def read_json(path: str | os.PathLike, what: str = "JSON file", *, shape: type = dict) -> Any:
    """Parse a JSON file whose top level must be ``shape`` (dict by default); one-line errors."""
    p = Path(path)
    with reading(p, what):
        obj = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(obj, shape):
        raise UserError(f"cannot read {what} {p}: expected a JSON {_json_kind(shape)}, got {_json_kind(type(obj))}")
    return obj


def _json_kind(t: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number",
            bool: "boolean", type(None): "null"}.get(t, t.__name__)  # fmt: skip


def check_fields(obj: dict[str, Any], types: dict[str, Any], where: str) -> None:
    """Each key of ``types`` present in ``obj`` must hold a value of that type (or types); one line."""
    for key, want in types.items():
        if key not in obj:
            continue
        kinds = want if isinstance(want, tuple) else (want,)
        value = obj[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(dict.fromkeys(_json_kind(k) for k in kinds))
            raise UserError(f"{where}: {key!r} must be a JSON {names}, got {_json_kind(type(value))}")


# ----------------------------------------------------------------------------- locks

_HELD: dict[str, list[Any]] = {}  # lock file -> [fd, count, pid]


class FolderLock:
    """An exclusive, re-entrant (per process) lock on an output folder; ``release`` removes the file."""

    def __init__(self, folder: str | Path, lock_file: str | Path | None = None):
        self.folder = Path(folder)
        self.file = Path(lock_file) if lock_file is not None else self.folder / LOCK_NAME
        self.key = os.path.abspath(self.file)
        self.held = False

    def acquire(self) -> FolderLock:
        """Take the lock or raise ``UserError("<folder> is being written by pid N")``."""
        import fcntl

        entry = _HELD.get(self.key)
        if entry is not None and entry[2] == os.getpid():
            entry[1] += 1
            self.held = True
            return self
        while True:
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode())
            except OSError as exc:
                raise UserError(f"cannot lock {self.folder} for writing: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"pid {holder}" if holder else "another process"
                raise UserError(f"{self.folder} is being written by {who}; wait for it to finish "
                                "or choose another output folder") from None
            except OSError as exc:  # e.g. a file system without locks: say so, never write unlocked
                os.close(fd)
                raise UserError(f"cannot lock {self.folder} for writing: {exc.strerror or exc}") from exc
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            try:  # the previous holder may have removed the file between our open and flock
                same = os.stat(self.file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        _HELD[self.key] = [fd, 1, os.getpid()]
        self.held = True
        return self

    def release(self) -> None:
        """Give the lock back; the last release of this process removes the lock file."""
        if not self.held:
            return
        self.held = False
        entry = _HELD.get(self.key)
        if entry is None or entry[2] != os.getpid():
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _HELD[self.key]
        with suppress(OSError):
            os.unlink(self.file)
        os.close(entry[0])

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The holder's pid from the lock file (it writes it right after locking: wait a moment for it)."""
    import time

    for _ in range(50):
        try:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


def lock_folder(folder: str | Path, lock_file: str | Path | None = None) -> FolderLock:
    """Lock an existing folder for writing (see :class:`FolderLock`); returns the held lock."""
    return FolderLock(folder, lock_file).acquire()


def unlock_folder(folder: str | Path) -> None:
    """Release this process's lock on ``folder`` if it holds one (any number of nested holds)."""
    lock = FolderLock(folder)
    entry = _HELD.get(lock.key)
    while entry is not None and entry[2] == os.getpid() and lock.key in _HELD:
        lock.held = True
        lock.release()


@contextmanager
def writing_folder(path: str | Path, *, foreign: Callable[[Path], list[str]] | None = None,
                   label: str = "--out") -> Iterator[Path]:  # fmt: skip
    """Create (if needed) and lock an output folder for the block; refuse one holding foreign files.

    ``foreign(folder)`` lists the files that are not this kind of output (checked under the
    lock). On an error the folder is removed again when this call created it and it is empty.
    """
    from robustbench_act.inputs import check_out_folder

    p = Path(path)
    check_out_folder(p, label)
    created = not p.exists()
    make_folder(p)
    try:
        with FolderLock(p):
            strangers = foreign(p) if foreign is not None else []
            if strangers:
                shown = ", ".join(strangers[:3]) + (f" (+{len(strangers) - 3} more)" if len(strangers) > 3 else "")
                raise UserError(f"{label} {p} holds files that are not this command's output ({shown}); "
                                "choose an empty or new folder")
            yield p
    except BaseException:
        if created:
            remove_if_empty(p)
        raise


@contextmanager
def locked_beside(path: str | Path) -> Iterator[Path]:
    """Lock a folder built elsewhere and renamed into place (an export): the lock file sits
    beside it as ``.<name>.lock``; a parent created here is removed again on error if empty."""
    p = Path(path)
    created = not p.parent.exists()
    make_folder(p.parent)
    try:
        with FolderLock(p, p.parent / f".{p.name}.lock"):
            yield p
    except BaseException:
        if created:
            remove_if_empty(p.parent)
        raise


def remove_if_empty(folder: str | Path) -> None:
    """Remove ``folder`` when nothing is left in it (a lock file of another writer keeps it)."""
    with suppress(OSError):
        Path(folder).rmdir()
