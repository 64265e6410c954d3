"""Round-trip probe for bench/where_time_goes.py, loaded only when this directory leads
PYTHONPATH and SLOTLOCK_PROBE_DIR is set: every redis-py round trip (one
``send_packed_command``: a single command or a whole pipeline) is counted under a label
(``HGETALL``, ``EVALSHA <script>``, ``pipeline[EVALSHA submit,ZADD]``: the
label is set by ``send_command`` or ``pack_commands``) and the counts of
each process are written to ``$SLOTLOCK_PROBE_DIR/<pid>.json`` twice a second. A counter
and a label per call: it costs microseconds, not milliseconds."""

import os

if os.environ.get("SLOTLOCK_PROBE_DIR"):
    import atexit
    import json
    import sys
    import threading
    import time
    from collections import Counter
    from pathlib import Path

    try:
        import redis.commands.core as _core
        import redis.connection as _conn
    except ImportError:  # not a process that talks to Redis
        _conn = None

    if _conn is not None:
        _dir = Path(os.environ["SLOTLOCK_PROBE_DIR"])
        _local = threading.local()
        _lock = threading.Lock()
        _state = {"pid": None, "counts": Counter(), "scripts": {}}

        def _name(value) -> str:
            if isinstance(value, (bytes, bytearray, memoryview)):
                value = bytes(value).decode(errors="replace")
            return str(value)

        def _label(args) -> str:
            name = _name(args[0]).upper()
            if name in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
                sha = _name(args[1])
                return f"EVALSHA {_state['scripts'].get(sha, sha[:8])}"
            if name in ("SCRIPT", "CLIENT", "CONFIG", "XINFO", "OBJECT") and len(args) > 1:
                return f"{name} {_name(args[1]).upper()}"
            return name

        def _dump() -> None:
            with _lock:
                data = {"pid": os.getpid(), "argv": sys.argv,
                        "counts": dict(_state["counts"]), "scripts": _state["scripts"]}
            tmp = _dir / f".{os.getpid()}.json"
            tmp.write_text(json.dumps(data))
            tmp.replace(_dir / f"{os.getpid()}.json")

        def _writer() -> None:
            while True:
                time.sleep(0.5)
                _dump()

        def _count(label: str) -> None:
            pid = os.getpid()
            with _lock:
                if _state["pid"] != pid:  # first call in this process (or after a fork)
                    _state["pid"], _state["counts"] = pid, Counter()
                    threading.Thread(target=_writer, daemon=True, name="probe").start()
                    atexit.register(_dump)
                _state["counts"][label] += 1
                _state["counts"]["(round trips)"] += 1

        _send_command = _conn.AbstractConnection.send_command
        _pack_commands = _conn.AbstractConnection.pack_commands
        _send = _conn.AbstractConnection.send_packed_command
        _script_init = _core.Script.__init__

        def send_command(self, *args, **kwargs):
            _local.label = _label(args)
            return _send_command(self, *args, **kwargs)

        def pack_commands(self, commands):
            names = Counter(_label(c) for c in commands)  # in order of first appearance
            _local.label = "pipeline[" + ",".join(
                name if n == 1 else f"{name}x{n}" for name, n in names.items()) + "]"
            return _pack_commands(self, commands)

        def send_packed_command(self, command, check_health=True):
            _count(getattr(_local, "label", "?"))
            _local.label = "?"
            return _send(self, command, check_health)

        _stems: dict[str, str] = {}

        def _first_line(text: str) -> str:
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
            return ""

        def _script_name(text: str) -> str:
            """The .lua file's name (slotlock's, or the rate limiter's ``limits``) if known."""
            if not _stems:
                import importlib.util

                for package in ("slotlock", "limits"):
                    spec = importlib.util.find_spec(package)
                    if spec and spec.origin:
                        for path in Path(spec.origin).parent.rglob("*.lua"):
                            _stems.setdefault(_first_line(path.read_text()), path.stem)
            first = _first_line(text)
            return _stems.get(first) or first[:40]

        def script_init(self, registered_client, script):
            _script_init(self, registered_client, script)
            text = script.decode() if isinstance(script, bytes) else str(script)
            _state["scripts"][self.sha] = _script_name(text)

        _conn.AbstractConnection.send_command = send_command
        _conn.AbstractConnection.pack_commands = pack_commands
        _conn.AbstractConnection.send_packed_command = send_packed_command
        _core.Script.__init__ = script_init
