"""libespeak-ng (from PyPI espeakng-loader) driven in process through ctypes. libespeak-ng keeps state
between calls, so an engine server (a bare `python -m minisuperb.engine`, cheap to fork) initialises the
engine once and forks a pristine child per utterance; the child answers the client and exits."""

from __future__ import annotations

import ctypes as C
import json
import os
import struct
import subprocess
import sys

INSTALL_HINT = "install it with `pip install espeakng-loader==0.2.4` (or `pip install -e '.[synth]'`)"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8, _PHONEMES, _ENDPAUSE = 0x1, 0x100, 0x1000  # flags: [[...]] phoneme input, final pause
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_HEADER = struct.Struct("<bqq")  # failed flag, PCM bytes, JSON bytes


class EngineUnavailable(RuntimeError):
    """espeak-ng cannot be found or started."""


def engine_paths() -> tuple[str, str]:
    """(library path, data path) of the espeakng-loader wheel, or EngineUnavailable saying what to install."""
    try:
        import espeakng_loader
    except ImportError as e:
        raise EngineUnavailable(f"espeak-ng engine not found ({e}); {INSTALL_HINT}") from None
    lib = espeakng_loader.get_library_path()
    try:
        data = espeakng_loader.get_data_path()
    except RuntimeError as e:
        raise EngineUnavailable(f"espeak-ng data missing ({e}); reinstall: {INSTALL_HINT}") from None
    if not os.path.isfile(lib):
        raise EngineUnavailable(f"espeak-ng library {lib} is missing; reinstall: {INSTALL_HINT}")
    return lib, data


class _Id(C.Union):
    _fields_ = [("number", C.c_int), ("name", C.c_char_p), ("string", C.c_char * 8)]


class _Event(C.Structure):  # espeak_EVENT from speak_lib.h
    _fields_ = [
        ("type", C.c_int),
        ("unique_identifier", C.c_uint),
        ("text_position", C.c_int),
        ("length", C.c_int),
        ("audio_position", C.c_int),
        ("sample", C.c_int),
        ("user_data", C.c_void_p),
        ("id", _Id),
    ]


_SynthCallback = C.CFUNCTYPE(C.c_int, C.POINTER(C.c_short), C.c_int, C.POINTER(_Event))


class _Engine:
    """The initialised library (server side). `synth` is only ever called in a forked child."""

    def __init__(self) -> None:
        lib_path, data_path = engine_paths()
        try:
            self._lib = C.CDLL(lib_path)
        except OSError as e:
            raise EngineUnavailable(f"cannot load {lib_path}: {e}; {INSTALL_HINT}") from None
        self._lib.espeak_Info.restype = C.c_char_p
        self.version = self._lib.espeak_Info(None).decode()
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if self.sample_rate <= 0:
            raise EngineUnavailable(f"espeak_Initialize failed (data path {data_path}); {INSTALL_HINT}")
        # Initialise seeds espeak's noise generator (breathy voices) from the clock: fix it.
        self._lib.espeak_ng_SetRandSeed.argtypes = [C.c_long]
        self._lib.espeak_ng_SetRandSeed(0)
        self._pcm: list[bytes] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds only the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._pcm.append(C.string_at(wav, 2 * num_samples))
        k = 0
        while events[k].type != _EVENT_LIST_TERMINATED:
            if events[k].type == _EVENT_PHONEME:
                name = bytes(events[k].id.string).split(b"\0")[0].decode("ascii", "replace")
                self._events.append((name, int(events[k].sample)))
            k += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int, prange: int) -> tuple[bytes, list]:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_RATE, rate), (_VOLUME, 100), (_PITCH, pitch), (_RANGE, prange)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        buf = text.encode() + b"\0"
        self._lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES | _ENDPAUSE, None, None)
        self._lib.espeak_Synchronize()
        return b"".join(self._pcm), list(self._events)


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _message(failed: bool, pcm: bytes, meta: bytes) -> bytes:
    return _HEADER.pack(int(failed), len(pcm), len(meta)) + pcm + meta


def serve(in_fd: int = 0, out_fd: int = 1) -> None:
    """Server loop: hello message, then per request (length-prefixed JSON) one forked child that
    synthesises from the pristine post-initialisation state, answers, and exits."""
    try:
        engine = _Engine()
    except Exception as e:  # report, so the client can raise a clear error
        _write_all(out_fd, _message(True, b"", f"{type(e).__name__}: {e}".encode()))
        return
    _write_all(
        out_fd,
        _message(False, b"", json.dumps({"version": engine.version, "sample_rate": engine.sample_rate}).encode()),
    )
    while True:
        try:
            (size,) = struct.unpack("<q", _read_exact(in_fd, 8))
            request = json.loads(_read_exact(in_fd, size))
        except EOFError:
            return
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                pcm, events = engine.synth(**request)
                reply = _message(False, pcm, json.dumps(events).encode())
            except BaseException as e:
                reply, status = _message(True, b"", f"{type(e).__name__}: {e}".encode()), 1
            _write_all(out_fd, reply)
            os._exit(status)  # no Python cleanup in the child
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 1)):  # crashed before replying
            _write_all(out_fd, _message(True, b"", f"synthesis child died (wait status {status})".encode()))


class EspeakClient:
    """Handle on an engine server process; `synth` returns (int16 PCM bytes, [(mnemonic, sample)])."""

    def __init__(self) -> None:
        engine_paths()  # fail early with the install hint
        # Run this file as a script: importing the package would load numpy/scipy and make forks slow.
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        failed, payload = self._receive()
        if failed:
            self.close()
            raise EngineUnavailable(f"espeak-ng did not start: {payload[1].decode(errors='replace')}; {INSTALL_HINT}")
        hello = json.loads(payload[1])
        self.version: str = hello["version"]
        self.sample_rate: int = hello["sample_rate"]

    def _receive(self) -> tuple[bool, tuple[bytes, bytes]]:
        fd = self._proc.stdout.fileno()
        try:
            failed, n_pcm, n_meta = _HEADER.unpack(_read_exact(fd, _HEADER.size))
            return bool(failed), (_read_exact(fd, n_pcm), _read_exact(fd, n_meta))
        except EOFError:
            raise RuntimeError(f"espeak-ng server exited (code {self._proc.poll()})") from None

    def synth(self, text: str, voice: str, rate: int, pitch: int, prange: int) -> tuple[bytes, list]:
        request = json.dumps({"text": text, "voice": voice, "rate": rate, "pitch": pitch, "prange": prange}).encode()
        _write_all(self._proc.stdin.fileno(), struct.pack("<q", len(request)) + request)
        failed, (pcm, meta) = self._receive()
        if failed:
            raise RuntimeError(f"espeak-ng failed on {text[:60]!r} (voice {voice}): {meta.decode(errors='replace')}")
        return pcm, [tuple(e) for e in json.loads(meta)]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)


if __name__ == "__main__":
    serve()
