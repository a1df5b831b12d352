"""Atomic outputs: write to a temporary name in the same folder, then rename.

Output locations are checked before any work (:func:`check_output`); OS errors while
writing become one-line :class:`~deploy.core.errors.DeployError` s; SIGINT / SIGTERM are
held back while a temporary file or folder is created, committed or removed, so an
interrupted run leaves neither a staging folder nor a partial output.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError

#: the top-level names the toolchain's commands write into an output folder
OUTPUT_NAMES = ("report.json", "report.md", "report.html", "*.png", "comparison.md", "search.json", "model.pt",
                "onnx")
#: a folder holding one of these (and only OUTPUT_NAMES) is an earlier output, replaced as a whole
PRIMARY_NAMES = ("report.json", "search.json", "comparison.md")
#: OS errors that mean "this location cannot be written" (reported as one line, not as internal errors)
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOENT,
                 errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY, errno.ENAMETOOLONG, errno.EXDEV,
                 errno.EBUSY, errno.EIO, errno.ELOOP}
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def shown(path: str | Path) -> str:
    """``path`` for a message: as is, or repr-quoted when it holds control characters."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the duration: a signal that arrives meanwhile goes to
    the handler that was in place when the block ends (an exception raised there, or the default
    action). So a block that creates something to clean up must sit inside the ``try`` that
    cleans it up. Python-level, since the OS may hand a signal to any thread; a no-op outside
    the main thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if pending:
            _redeliver(pending[0], previous[pending[0]])


def _redeliver(signum: int, handler: Any) -> None:
    """Give a held signal to ``handler``, the one in place before it was held."""
    if callable(handler):
        handler(signum, None)
    elif handler in (signal.SIG_DFL, None):
        os.kill(os.getpid(), signum)


def _cannot(path: str | Path, exc: OSError) -> DeployError:
    return DeployError(f"cannot write {shown(path)}: {exc.strerror or exc}")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a write would start in)."""
    for cand in (path, *path.parents):
        if cand.exists() or cand.is_symlink():
            return cand
    return Path.cwd()


def _probe(folder: Path, target: Path) -> None:
    """Create and remove a temporary file in ``folder``: the one reliable writability test
    (as root, ``os.access`` says yes to read-only folders and to ``/proc``)."""
    with signals_deferred():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".neurodeploy-probe.", dir=folder)
        except OSError as exc:
            raise DeployError(f"cannot write {shown(target)}: {shown(folder)}: {exc.strerror or exc}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def check_output(path: str | Path, kind: str = "folder") -> Path:
    """Raise a one-line DeployError unless an output ``kind`` ("folder" or "file") can be
    written at ``path``; nothing is left behind. Returns ``path`` as a Path."""
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    raw = os.fspath(path)
    if not raw.strip():
        raise DeployError(f"empty output path (give a {kind} name)")
    out = Path(raw)
    try:
        exists = out.exists()
        if exists and kind == "folder" and not out.is_dir():
            raise DeployError(f"{shown(out)} exists and is not a folder")
        if exists and kind == "file" and out.is_dir():
            raise DeployError(f"{shown(out)} is a folder; give a file name")
        start = _nearest_existing(out.parent)
        if not start.is_dir():
            raise DeployError(f"cannot write {shown(out)}: {shown(start)} is a file, not a folder")
        _probe(start, out)
        if exists and kind == "folder":
            _probe(out, out)
    except ValueError as exc:  # e.g. an embedded NUL byte
        raise DeployError(f"cannot write {shown(out)}: {exc}") from None
    except OSError as exc:  # e.g. a name too long
        raise _cannot(out, exc) from None
    return out


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path``; on error nothing is left."""
    path = Path(path)
    tmp = None
    try:
        with signals_deferred():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            except OSError as exc:
                raise _cannot(path, exc) from None
            os.close(fd)
        try:
            writer(Path(tmp))
            with signals_deferred():
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise _cannot(path, exc) from None
            raise
    except BaseException:
        if tmp is not None:
            with signals_deferred(), contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _matches(name: str, patterns: Collection[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


def _earlier_output(folder: Path, owns: Collection[str]) -> tuple[bool, bool]:
    """(holds an earlier output, holds nothing else): an earlier output is a report, search or
    comparison document; "nothing else" means every name matches ``owns``."""
    names = [p.name for p in folder.iterdir()]
    return any(n in PRIMARY_NAMES for n in names), all(_matches(n, owns) for n in names)


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _commit(stage: Path, outdir: Path, owns: Collection[str]) -> None:
    """Put the staged folder in place of ``outdir``: by renaming it when ``outdir`` is new or an
    earlier output (stale files go with it), else by moving its entries in one by one."""
    for _ in range(20):  # retried when another run commits into the same folder meanwhile
        if not (outdir.exists() or outdir.is_symlink()):
            os.chmod(stage, _default_mode())
            try:
                os.rename(stage, outdir)
                return
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
        if not outdir.is_dir():
            raise DeployError(f"{shown(outdir)} exists and is not a folder")
        earlier, only_ours = _earlier_output(outdir, owns)
        if earlier and only_ours:
            os.chmod(stage, stat.S_IMODE(outdir.stat().st_mode))
            old = outdir.with_name(f".{outdir.name}.replaced.{secrets.token_hex(4)}")
            try:
                os.rename(outdir, old)
            except FileNotFoundError:
                continue
            except OSError:  # a mount point, a sticky folder, ...: fall back to moving entries
                _merge(stage, outdir, owns, earlier)
                return
            try:
                os.rename(stage, outdir)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    os.rename(old, outdir)
                    raise
                shutil.rmtree(old, ignore_errors=True)
                continue  # another run put its output there first: replace that one
            shutil.rmtree(old, ignore_errors=True)
            return
        _merge(stage, outdir, owns, earlier)
        return
    raise DeployError(f"cannot write {shown(outdir)}: other runs keep replacing it")


def _merge(stage: Path, outdir: Path, owns: Collection[str], earlier: bool) -> None:
    """Move the staged entries into an existing folder that also holds other files; when it
    holds an earlier output, that output's files this run did not write (names matching
    ``owns``) are removed, and other files are kept."""
    new = {item.name for item in stage.iterdir()}
    for name in new:
        target = outdir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(stage / name, target)
    if earlier:
        for old in outdir.iterdir():
            if old.name not in new and _matches(old.name, owns):
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        old.unlink()


@contextlib.contextmanager
def staged_dir(outdir: str | Path, owns: Collection[str] = OUTPUT_NAMES) -> Iterator[Path]:
    """Yield a staging folder; on success it becomes ``outdir``, on error (or a signal) it vanishes.

    ``outdir`` is created only when everything succeeded. An existing ``outdir`` that holds an
    earlier output (a report/search/comparison document) keeps no stale file of it: when every
    name in it matches ``owns`` it is replaced as a whole, else the earlier output's files this run
    did not write are removed and other files stay. A folder without an earlier output only
    gets the new files moved in.
    """
    if not os.fspath(outdir).strip():
        raise DeployError("empty output path (give a folder name)")
    outdir = Path(outdir).resolve()
    stage = None
    try:
        with signals_deferred():
            try:
                outdir.parent.mkdir(parents=True, exist_ok=True)
                stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.staging.", dir=outdir.parent))
            except OSError as exc:
                raise _cannot(outdir, exc) from None
        yield stage
        with signals_deferred():
            try:
                _commit(stage, outdir, owns)
            except OSError as exc:
                raise _cannot(outdir, exc) from None
    finally:
        if stage is not None:
            with signals_deferred():
                shutil.rmtree(stage, ignore_errors=True)
