"""Files of run folders: atomic writes, validated reads, safe checkpoints, per-run locks.

Every file the benchmark reads back from a run folder goes through this module, so a damaged
or hostile file is reported, with its path and what to do, instead of crashing or running code:

* :func:`read_json` / :func:`read_final` / :func:`read_index` parse and check ``final.json``
  and ``study.json``;
* :func:`load_checkpoint` loads ``checkpoint.pt`` with ``torch.load(weights_only=True)``: a
  checkpoint holds tensors, numbers, strings and plain containers only (the random generator
  states too, see :func:`rng_state`), so a crafted pickle is refused, never executed;
* :func:`load_samples` reads ``samples.npz`` without pickles and checks its arrays.

Each raises :class:`DamagedFile`, whose message names the file, the damage and the remedy::

    `runs/s/runs/synthetic/dice-s0-6286f5a3/final.json` is damaged (truncated JSON); delete the
    run folder or re-run with `--redo synthetic/dice-s0-6286f5a3`

Writes (:func:`atomic_write_text`, :func:`atomic_write_json`, :func:`atomic_write_bytes`,
:func:`atomic_torch_save`) go through a temporary file in the same folder and ``os.replace``;
the file is created with the permissions of an ordinary write (``0o666`` less the umask).

:class:`RunLock` is an exclusive lock per run (a lock file outside the run folder), so
processes sharing an output folder never train one run at the same time; see its docstring.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

import numpy as np
import torch

__all__ = [
    "DamagedFile",
    "redo_advice",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "read_json",
    "read_final",
    "read_index",
    "load_checkpoint",
    "load_samples",
    "rng_state",
    "set_rng_state",
    "RunLock",
    "folder_problem",
]


class DamagedFile(RuntimeError):
    """A file of a run folder that cannot be read back (truncated, garbage, refused, missing keys).

    Attributes:
        path: the file.
        reason: what is wrong with it.
        advice: what to do.

    Example:
        >>> str(DamagedFile("r/final.json", "truncated JSON", redo_advice("d/ce-s0-1")))
        '`r/final.json` is damaged (truncated JSON); delete the run folder or re-run with `--redo d/ce-s0-1`'
    """

    def __init__(self, path: str | Path, reason: str, advice: Optional[str] = None) -> None:
        self.path, self.reason = Path(path), reason
        self.advice = advice or redo_advice(None)
        super().__init__(f"`{self.path}` is damaged ({reason}); {self.advice}")


def redo_advice(run_id: Optional[str]) -> str:
    """What to do about a damaged file of run ``run_id``.

    Example:
        >>> redo_advice(None)
        'delete the run folder and run the study again'
    """
    if run_id:
        return f"delete the run folder or re-run with `--redo {run_id}`"
    return "delete the run folder and run the study again"


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def _atomic(path: Path, write: Callable[[io.BufferedWriter], object]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open applies the umask to 0o666, as an ordinary open() would (mkstemp would force 0o600)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - a 32-bit random name taken
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    A reader (or a process killed mid-write) sees the old file or the new one, never a part.
    The new file has the permissions of an ordinary write (``0o666`` less the umask).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> atomic_write_bytes(p, b"ab"); p.read_bytes()
        b'ab'
    """
    _atomic(Path(path), lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`); its folder is created.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write_text(p, "hello"); p.read_text()
        'hello'
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_write_bytes`).

    Non-finite floats are written as ``NaN`` / ``Infinity`` (Python's JSON dialect).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
        >>> atomic_write_json(p, {"x": 1}); json.loads(p.read_text())
        {'x': 1}
    """
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically (see :func:`atomic_write_bytes`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.pt"
        >>> atomic_torch_save(p, {"w": torch.ones(2)}); torch.load(p, weights_only=True)["w"]
        tensor([1., 1.])
    """
    _atomic(Path(path), lambda f: torch.save(obj, f))


def folder_problem(path: str | Path) -> Optional[str]:
    """Why files cannot be written in folder ``path`` (created when missing), or ``None``.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "file"; _ = f.write_text("")
        >>> folder_problem(f / "sub")
        "'...file/sub' cannot be created: Not a directory"
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"'{path}' cannot be created: {err.strerror or err}"
    probe = path / f".write-test.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as err:
        return f"'{path}' is not writable: {err.strerror or err}"
    return None


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def read_json(path: str | Path, *, advice: Optional[str] = None,
              check: Optional[Callable[[Any], Optional[str]]] = None) -> Any:
    """Parse a JSON file of a run folder; :class:`DamagedFile` when it cannot be read or fails ``check``.

    Args:
        path: the file.
        advice: the remedy named in the error (default :func:`redo_advice` without a run).
        check: ``obj -> None`` when the content is usable, else the problem (e.g. a missing key).

    Raises:
        DamagedFile: unreadable, not UTF-8, empty, truncated or invalid JSON, or ``check`` failed.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.json"; _ = p.write_text('{"a": [1, 2')
        >>> read_json(p)
        Traceback (most recent call last):
        ...
        seglosses.bench.runfiles.DamagedFile: `...f.json` is damaged (truncated JSON); delete the run folder and run the study again
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise DamagedFile(path, f"unreadable: {err.strerror or err}", advice) from None
    except UnicodeDecodeError:
        raise DamagedFile(path, "not UTF-8 text", advice) from None
    if not text.strip():
        raise DamagedFile(path, "empty file", advice)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        end = len(text.rstrip())
        truncated = err.pos >= end - 1 or err.msg.startswith("Unterminated")
        reason = "truncated JSON" if truncated else f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        raise DamagedFile(path, reason, advice) from None
    problem = check(obj) if check is not None else None
    if problem:
        raise DamagedFile(path, problem, advice)
    return obj


def _missing(obj: Any, spec: Mapping[str, type], where: str = "") -> Optional[str]:
    if not isinstance(obj, Mapping):
        return f"{where or 'the content'} is not a JSON object"
    for key, kind in spec.items():
        name = repr(f"{where}.{key}" if where else key)
        if key not in obj:
            return f"missing key {name}"
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool) and kind is not bool:
            return f"{name} is not {_kind_name(kind)}"
    return None


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def check_final(obj: Any) -> Optional[str]:
    """The problem of a ``final.json`` content, or ``None`` (the keys the report and the bench read).

    Example:
        >>> check_final({"config": {"seed": 0}, "dataset": "d", "results": {}}) is None
        True
        >>> check_final({"config": {}, "dataset": "d", "results": {}})
        "missing key 'config.seed'"
    """
    problem = _missing(obj, {"config": dict, "dataset": str, "results": dict})
    problem = problem or _missing(obj["config"], {"seed": int}, "config")
    if problem:
        return problem
    for key, kind in (("per_image", dict), ("history", list)):
        if key in obj and not isinstance(obj[key], kind):
            return f"{key!r} is not {_kind_name(kind)}"
    return None


def check_index(obj: Any) -> Optional[str]:
    """The problem of a ``study.json`` content, or ``None``.

    Example:
        >>> check_index({"name": "s", "runs": [{"id": 3}]})
        "'runs[0].id' is not a string"
    """
    problem = _missing(obj, {"name": str, "runs": list})
    if problem:
        return problem
    for i, run in enumerate(obj["runs"]):
        problem = _missing(run, {"id": str}, f"runs[{i}]")
        if problem:
            return problem
    for key, kind in (("failures", list), ("settings", dict)):
        if obj.get(key) is not None and not isinstance(obj[key], kind):
            return f"{key!r} is not {_kind_name(kind)}"
    return None


def read_final(path: str | Path, *, advice: Optional[str] = None) -> Dict[str, Any]:
    """Read and check a run's ``final.json`` (see :func:`read_json`, :func:`check_final`)."""
    return read_json(path, advice=advice, check=check_final)


def read_index(path: str | Path) -> Dict[str, Any]:
    """Read and check a study's ``study.json`` (see :func:`read_json`, :func:`check_index`)."""
    return read_json(path, check=check_index,
                     advice="delete it and run `seglosses bench` on the study again to rewrite it")


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu", advice: Optional[str] = None,
                    required: Iterable[str] = ()) -> Dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; :class:`DamagedFile` when that fails.

    The safe loader accepts tensors, numbers, strings, ``None`` and plain containers only; a file
    with any other object (a crafted pickle that would run code) is refused without running it.

    Args:
        path: the checkpoint.
        map_location: as for :func:`torch.load`.
        advice: the remedy named in the error.
        required: keys the checkpoint must hold.

    Raises:
        DamagedFile: unreadable, not a checkpoint, refused by the safe loader, or a missing key.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.pt"
        >>> atomic_torch_save(p, {"epoch": 1}); load_checkpoint(p, required=["epoch"])
        {'epoch': 1}
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise DamagedFile(path, f"unreadable: {err.strerror or err}", advice) from None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure of the loader means the same: a bad file
        text = str(err)
        refused = re.search(r"GLOBAL ([\w.]+)", text)
        if refused:
            reason = (f"it holds objects other than tensors, numbers, strings and plain containers "
                      f"({refused.group(1)}); refused unread")
        else:
            first = next((ln.strip() for ln in text.splitlines() if "operand" in ln or "zip" in ln), None)
            first = first or (text.strip().splitlines()[0] if text.strip() else type(err).__name__)
            reason = f"not a readable checkpoint: {first.split('. ')[0].rstrip('.')}"
        raise DamagedFile(path, reason, advice) from None
    if not isinstance(state, dict):
        raise DamagedFile(path, f"not a checkpoint mapping (got {type(state).__name__})", advice)
    missing = [k for k in required if k not in state]
    if missing:
        raise DamagedFile(path, f"missing key {missing[0]!r}", advice)
    return state


def load_samples(path: str | Path, *, advice: Optional[str] = None) -> Dict[str, Any]:
    """Read a run's ``samples.npz`` (no pickles): ``{"names", "images", "truths", "preds"}``.

    Raises:
        DamagedFile: unreadable, not an ``.npz`` archive, or missing / inconsistent arrays.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "names" not in files:
                raise DamagedFile(path, "missing array 'names'", advice)
            names = [str(n) for n in z["names"]]
            k = len(names)
            if {"images", "truths", "preds"} <= files:
                images, truths, preds = list(z["images"]), list(z["truths"]), list(z["preds"])
            else:
                wanted = [f"{kind}_{j}" for j in range(k) for kind in ("image", "truth", "pred")]
                absent = [w for w in wanted if w not in files]
                if absent:
                    raise DamagedFile(path, f"missing array {absent[0]!r}", advice)
                images = [z[f"image_{j}"] for j in range(k)]
                truths = [z[f"truth_{j}"] for j in range(k)]
                preds = [z[f"pred_{j}"] for j in range(k)]
    except DamagedFile:
        raise
    except OSError as err:
        raise DamagedFile(path, f"unreadable: {err.strerror or err}", advice) from None
    except Exception as err:  # noqa: BLE001 - zip, zlib and format errors of numpy all mean a bad file
        raise DamagedFile(path, f"not a readable .npz archive: {err}", advice) from None
    if not (len(images) == len(truths) == len(preds) == k):
        raise DamagedFile(path, f"{k} names for {len(images)} images, {len(truths)} truths, {len(preds)} "
                                "predictions", advice)
    for j, (im, tr, pr) in enumerate(zip(images, truths, preds)):
        if tr.shape != pr.shape or tr.shape[-2:] != im.shape[-2:]:
            raise DamagedFile(path, f"sample {j}: image {list(im.shape)}, truth {list(tr.shape)} and "
                                    f"prediction {list(pr.shape)} do not match", advice)
    return {"names": names, "images": images, "truths": truths, "preds": preds}


# ------------------------------------------------------------------------------------------------
# Random generator states, as tensors and plain values (loadable with weights_only=True)
# ------------------------------------------------------------------------------------------------


def rng_state() -> Dict[str, Any]:
    """The states of every global random generator (torch CPU and CUDA, NumPy, Python).

    Only tensors, numbers and strings, so a checkpoint holding them loads with
    ``torch.load(weights_only=True)``.

    Example:
        >>> s = rng_state(); a = torch.rand(1); set_rng_state(s); bool(torch.rand(1) == a)
        True
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generator states saved by :func:`rng_state`.

    Args:
        state: the mapping :func:`rng_state` returned (``"cuda"`` is used only where CUDA is
            available).

    Example:
        >>> s = rng_state(); a = np.random.rand(); set_rng_state(s); np.random.rand() == a
        True
    """
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"].numpy(), dtype=np.uint32), int(n["pos"]),
                         int(n["has_gauss"]), float(n["gauss"])))
    p = state["python"]
    random.setstate((int(p["version"]), tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------
# Locks
# ------------------------------------------------------------------------------------------------


class RunLock:
    """An exclusive lock of one run, held while a process trains, evaluates or redoes it.

    The lock is an OS file lock (``flock``) on a lock file (the study runner uses
    ``OUT/<study>/.locks/<run id>.lock``, outside the run folder, so removing a run folder never
    removes a held lock), which records the holder's PID and host. The operating system releases it when the holder
    exits, however it exits, so the lock of a killed process is taken over at once; the file
    itself stays (removing it would let two processes lock two different files). On network
    file systems it is as reliable as their ``flock`` support.

    One lock per run (not per study) lets several processes share a study folder, each training
    different runs, and never two the same run.

    Example:
        >>> import tempfile, pathlib
        >>> lock = RunLock(pathlib.Path(tempfile.mkdtemp()) / "run.lock")
        >>> lock.acquire(blocking=False), RunLock(lock.path).acquire(blocking=False)
        (True, False)
        >>> lock.release()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: Optional[int] = None

    def holder(self) -> str:
        """Who holds the lock, as recorded in the lock file (``"process 123 on host"``)."""
        try:
            text = self.path.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError):
            text = []
        if len(text) >= 2 and text[0].isdigit():
            host = text[1]
            return f"process {text[0]}" + ("" if host == socket.gethostname() else f" on {host}")
        return "another process"

    def acquire(self, blocking: bool = True, on_wait: Optional[Callable[[str], None]] = None,
                poll: float = 0.2) -> bool:
        """Take the lock; ``False`` when ``blocking`` is off and another process holds it.

        Args:
            blocking: wait for the holder to finish.
            on_wait: called once with :meth:`holder` before waiting.
            poll: seconds between attempts while waiting.
        """
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        told = False
        try:
            while not _try_lock(fd):
                if not blocking:
                    os.close(fd)
                    return False
                if not told and on_wait is not None:
                    on_wait(self.holder())
                told = True
                time.sleep(poll)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (the file stays)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:  # pragma: no cover
                pass
            _unlock(fd)
            os.close(fd)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


if sys.platform != "win32":  # fcntl: POSIX; msvcrt: Windows (a check the type checker follows)
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

else:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

