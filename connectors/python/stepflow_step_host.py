#!/usr/bin/python3
"""stepflow's Python step host: runs one PowerFlow step class (``steps/<Class>.py``).

    /usr/bin/python3 stepflow_step_host.py --step-file <pack>/steps/<Class>.py \
        [--class <Class>] [--syncpack <name>]

It speaks the step protocol (docs/step-protocol.md) on stdin/stdout: one
``ready`` line, then for every ``run`` line one ``result`` line, with ``log``
and ``cache`` lines in between. The step module is imported once; every task
gets a fresh instance of the class. stdout is kept for protocol lines only:
``print()`` (and anything else writing to file descriptor 1) goes to stderr,
and the step cannot read the protocol from stdin. End of stdin → exit 0.

Bytes saved by a step travel as ``{"__bytes_b64__": "<base64>"}`` and are
decoded back to bytes for the Python steps that read them. Pure stdlib.
See docs/python-steps.md.
"""

import argparse
import collections
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import threading
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOL = 1
MAX_LINE = 64 * 1024 * 1024
RESERVED_PACKAGES = {"ipaascore", "ipaascommon", "base_steps_syncpack"}  # always the host's own
SECRET_KEY = re.compile(r"pass|secret|token|credential|private|api_?key|auth", re.I)


def note(text):
    """A line for stderr (free text; the runtime keeps the last lines)."""
    try:
        sys.stderr.write(f"stepflow_step_host: {text}\n")
        sys.stderr.flush()
    except Exception:
        pass


# -- the protocol channel ---------------------------------------------------------


class ProtocolClosed(Exception):
    pass


class Channel:
    """Owns the real stdin/stdout; fds 0 and 1 are pointed at /dev/null and stderr."""

    def __init__(self):
        sys.stdout.flush()
        out_fd = os.dup(1)  # non-inheritable: child processes never see it
        os.dup2(2, 1)
        in_fd = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self._out = os.fdopen(out_fd, "wb")
        self._in = os.fdopen(in_fd, "rb")
        sys.stdout = sys.stderr
        sys.stdin = open(os.devnull, "r")
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._pending = collections.deque()
        self._request = 0
        self.eof = False

    @staticmethod
    def encode(obj):
        return (json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
                + "\n").encode("ascii")

    def send_line(self, line):
        with self._wlock:
            self._out.write(line)
            self._out.flush()

    def send(self, obj):
        self.send_line(self.encode(obj))

    def _read_raw(self):
        """The next JSON object from stdin, or None at end of input."""
        while True:
            if self.eof:
                return None
            line = self._in.readline()
            if not line:
                self.eof = True
                return None
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError as e:
                note(f"ignored a stdin line that is not JSON ({e})")
                continue
            if not isinstance(msg, dict):
                note("ignored a stdin line that is not a JSON object")
                continue
            return msg

    def next_message(self):
        if self._pending:
            return self._pending.popleft()
        with self._rlock:
            return self._read_raw()

    def cache_request(self, task_id, op, fields):
        """Sends a ``cache`` request and blocks until its ``cache_result``."""
        from ipaascommon.ipaas_exceptions import CacheException

        with self._rlock:
            self._request += 1
            n = self._request
            self.send({"type": "cache", "id": task_id, "request": n, "op": op, **fields})
            while True:
                msg = self._read_raw()
                if msg is None:
                    raise CacheException(
                        f"cache {op}: stdin closed before the answer to request {n}")
                if msg.get("type") == "cache_result":
                    if msg.get("request") != n:
                        note(f"ignored a cache_result for request {msg.get('request')!r}")
                        continue
                    if msg.get("ok"):
                        return msg.get("value")
                    raise CacheException(f"cache {op} failed: {msg.get('error') or 'no reason given'}")
                self._pending.append(msg)


# -- logging ---------------------------------------------------------------------


def level_name(levelno):
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno == 25:
        return "flow"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class Task:
    def __init__(self, msg):
        self.id = msg.get("id")
        self.msg = msg
        level = msg.get("log_level", logging.INFO)
        self.log_level = level if isinstance(level, int) and not isinstance(level, bool) else logging.INFO
        secrets = set()
        for section in ("configuration", "app_variables", "params"):
            values = msg.get(section)
            if isinstance(values, dict):
                for k, v in values.items():
                    if isinstance(v, str) and len(v) >= 4 and SECRET_KEY.search(str(k)):
                        secrets.add(v)
        self.secrets = sorted(secrets, key=len, reverse=True)

    def redact(self, text):
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


class ProtocolLogHandler(logging.Handler):
    """Turns log records into ``log`` lines for the running task."""

    def __init__(self, host):
        super().__init__(logging.DEBUG)
        self.host = host
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        task = self.host.task
        try:
            if task is None:
                note(f"log outside a task ({record.levelname}): {record.getMessage()}")
                return
            if record.levelno < task.log_level:
                return
            message = task.redact(self.format(record))
            self.host.channel.send({"type": "log", "id": task.id,
                                    "level": level_name(record.levelno), "message": message})
        except Exception:
            self.handleError(record)


# -- loading the step -------------------------------------------------------------


def _is_identifier(name):
    return bool(name) and name.isidentifier()


def _alias_package(name, pack_dir):
    """Makes ``import <name>`` resolve to ``pack_dir`` (a SyncPack whose folder has another name)."""
    init = os.path.join(pack_dir, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[pack_dir])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [pack_dir]
        module = types.ModuleType(name)
        module.__spec__ = spec
        module.__path__ = [pack_dir]
        sys.modules[name] = module


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def load_step_class(step_file, class_name=None, syncpack=None):
    """Imports the step module once (as ``<syncpack>.steps.<Class>`` when laid out so) and returns the class."""
    step_file = os.path.abspath(step_file)
    if not os.path.isfile(step_file):
        raise FileNotFoundError(f"no step file {step_file}")
    steps_dir = os.path.dirname(step_file)
    stem = os.path.splitext(os.path.basename(step_file))[0]
    class_name = class_name or stem

    if HERE in sys.path:
        sys.path.remove(HERE)
    sys.path.insert(0, HERE)
    pack_dir = os.path.dirname(steps_dir) if os.path.basename(steps_dir) == "steps" else None
    if pack_dir:
        parent = os.path.dirname(pack_dir)
        if parent not in sys.path:
            sys.path.insert(1, parent)
        for extra in (pack_dir, steps_dir):  # after the standard library: never shadow it
            if extra not in sys.path:
                sys.path.append(extra)
    elif steps_dir not in sys.path:
        sys.path.append(steps_dir)

    module = None
    if pack_dir:
        pkg = os.path.basename(pack_dir)
        if (syncpack and syncpack != pkg and _is_identifier(syncpack) and syncpack not in sys.modules
                and syncpack not in RESERVED_PACKAGES):
            _alias_package(syncpack, pack_dir)
            pkg = syncpack
        if _is_identifier(pkg) and _is_identifier(stem):
            name = f"{pkg}.steps.{stem}"
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name not in (pkg, f"{pkg}.steps", name):
                    raise
                module = None
            if module is not None and not _same_file(getattr(module, "__file__", "") or "", step_file):
                module = None  # another package of that name won; load the file itself
    if module is None:
        name = stem if _is_identifier(stem) and stem not in sys.modules else f"_stepflow_step_{abs(hash(step_file))}"
        spec = importlib.util.spec_from_file_location(name, step_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)

    from ipaascore.BaseStep import BaseStep

    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        found = [c for c in vars(module).values()
                 if inspect.isclass(c) and issubclass(c, BaseStep) and c is not BaseStep
                 and c.__module__ == module.__name__]
        if len(found) != 1:
            raise ImportError(f"{step_file} defines no class {class_name}")
        cls = found[0]
    if not issubclass(cls, BaseStep):
        raise TypeError(f"{cls.__name__} in {step_file} is not a subclass of ipaascore.BaseStep.BaseStep")
    return cls


# -- running tasks -----------------------------------------------------------------


def _json_or_none(value):
    from ipaascommon.ipaas_utils import to_transport

    try:
        return to_transport(value)
    except TypeError:
        return None


def step_info(cls):
    """The ``ready`` info, from one instance built with an empty context."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    info = {"friendly_name": cls.__name__, "description": doc.split("\n\n")[0] if doc else "",
            "version": "", "parameters": []}
    try:
        obj = cls()
    except BaseException as e:  # noqa: BLE001 - a constructor may fail without a task
        note(f"{cls.__name__}() failed while reading the step's info: {type(e).__name__}: {e}")
        return info
    for attr in ("friendly_name", "description", "version"):
        v = getattr(obj, attr, None)
        if v is not None:
            info[attr] = str(v)
    params = getattr(obj, "parameters", None)
    if isinstance(params, dict):
        from ipaascore import parameter_types

        for name, p in params.items():
            default = getattr(p, "default_value", None)
            info["parameters"].append({
                "name": str(getattr(p, "name", name) or name),
                "description": str(getattr(p, "description", "") or ""),
                "required": bool(getattr(p, "required", False)),
                "default_value": _json_or_none(default),
                "type": parameter_types.type_name_of(getattr(p, "param_type", None), default),
            })
    return info


class Host:
    def __init__(self, channel, cls):
        self.channel = channel
        self.cls = cls
        self.task = None
        self.handler = ProtocolLogHandler(self)
        from ipaascore.BaseStep import STEP_LOGGER
        from ipaascommon import ipaas_manager

        self.step_logger = STEP_LOGGER
        self.step_logger.handlers = [self.handler]
        self.step_logger.propagate = False
        logging.getLogger().addHandler(self.handler)
        ipaas_manager.set_cache_backend(self._cache)

    def _cache(self, op, fields):
        from ipaascommon.ipaas_exceptions import CacheException

        task = self.task
        if task is None:
            raise CacheException("the cache is only available while a task runs")
        return self.channel.cache_request(task.id, op, fields)

    def serve(self):
        while True:
            msg = self.channel.next_message()
            if msg is None:
                return 0
            kind = msg.get("type")
            if kind == "run":
                self.channel.send_line(self.run(msg))
            elif kind == "cache_result":
                note(f"ignored a cache_result outside a cache request (request {msg.get('request')!r})")
            else:
                note(f"ignored a message of type {kind!r}")

    # one task ------------------------------------------------------------------

    def run(self, msg):
        """Runs one task and returns its encoded ``result`` line."""
        task = Task(msg)
        proto = msg.get("protocol", PROTOCOL)
        if proto != PROTOCOL:
            return Channel.encode({"type": "result", "id": task.id, "ok": False,
                                   "error": f"the Python step host speaks protocol {PROTOCOL}, not {proto}"})
        self.task = task
        self.step_logger.setLevel(task.log_level)
        logging.getLogger().setLevel(task.log_level)
        try:
            result = self._execute(task)
            result = {"type": "result", "id": task.id, **result}
            try:
                line = Channel.encode(result)
            except (TypeError, ValueError) as e:
                result.pop("data", None)
                result["ok"] = False
                result["error"] = f"TypeError: the step's result cannot be sent as JSON: {e}"
                line = Channel.encode(result)
            if len(line) > MAX_LINE:
                size = len(line)
                result.pop("data", None)
                result["ok"] = False
                result["error"] = (f"the data saved for the next step is too large: {size} bytes of JSON, "
                                   f"the protocol allows {MAX_LINE}")
                line = Channel.encode(result)
            return line
        finally:
            self.task = None
            try:
                sys.stderr.flush()
            except Exception:
                pass

    def _execute(self, task):
        from ipaascommon.ipaas_exceptions import MissingRequiredStepParameter, StepFailedException
        from ipaascommon.ipaas_utils import from_transport, to_transport

        obj = None

        def saved():
            if obj is None or not obj.has_saved_data():
                return {}
            try:
                return {"data": to_transport(obj.get_current_saved_data())}
            except TypeError:
                return {}

        try:
            obj = self._instance(task, from_transport)
            missing = [name for name, p in obj.parameters.items()
                       if getattr(p, "required", False) and obj.get_parameter(name) is None]
            if missing:
                raise MissingRequiredStepParameter(
                    "missing required step parameter" + ("s " if len(missing) > 1 else " ")
                    + ", ".join(repr(m) for m in missing))
            execute = obj.execute
            try:
                inspect.signature(execute).bind()
                args = ()
            except TypeError:
                args = (None,)  # execute(self, additional_data)
            except ValueError:
                args = ()
            execute(*args)
        except StepFailedException as e:
            error = str(e).strip() or type(e).__name__
            return {"ok": False, "error": task.redact(error), **saved()}
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any step failure becomes a result
            message = str(e).strip()
            error = f"{type(e).__name__}: {message}" if message else type(e).__name__
            if not isinstance(e, MissingRequiredStepParameter):
                self.step_logger.error("%s", self._traceback(e))
            return {"ok": False, "error": task.redact(error), **saved()}

        if not obj.has_saved_data():
            return {"ok": True, "data": None}
        try:
            return {"ok": True, "data": to_transport(obj.get_current_saved_data())}
        except TypeError as e:
            return {"ok": False, "error": f"TypeError: the data saved for the next step cannot be sent as JSON: {e}"}

    @staticmethod
    def _traceback(e):
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        return "".join(traceback.format_exception(type(e), e, tb)).rstrip()

    def _instance(self, task, decode):
        msg = task.msg
        obj = self.cls.__new__(self.cls)
        from ipaascore.BaseStep import _init_state

        _init_state(obj)
        d = obj.__dict__
        params = msg.get("params")
        d["_sf_params"] = decode(params) if isinstance(params, dict) else {}
        inputs = []
        for item in msg.get("inputs") or []:
            if isinstance(item, dict):
                inputs.append((item.get("name"), decode(item.get("data"))))
        d["_sf_inputs"] = inputs
        app_vars = msg.get("app_variables")
        d["_sf_app_variables"] = decode(app_vars) if isinstance(app_vars, dict) else {}
        config = msg.get("configuration")
        d["_sf_configuration"] = config if isinstance(config, dict) else {}
        step = msg.get("step") if isinstance(msg.get("step"), dict) else {}
        d["application_name"] = msg.get("application")
        d["step_name"] = step.get("name")
        d["syncpack"] = step.get("syncpack")
        d["run_id"] = msg.get("run_id")
        obj.__init__()
        if isinstance(getattr(obj, "parameters", None), dict):
            for p in list(obj.parameters.values()):
                obj._sf_apply(p)
        else:
            obj.__dict__["parameters"] = {}
        return obj


def main(argv=None):
    ap = argparse.ArgumentParser(description="Runs a PowerFlow Python step for stepflow (step protocol 1).")
    ap.add_argument("--step-file", required=True, help="path of <syncpack>/steps/<Class>.py")
    ap.add_argument("--class", dest="class_name", help="class name (default: the file name)")
    ap.add_argument("--syncpack", help="the SyncPack's package name (default: the folder name)")
    args = ap.parse_args(argv)

    channel = Channel()
    try:
        cls = load_step_class(args.step_file, args.class_name, args.syncpack)
    except BaseException as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        note(f"cannot load {args.step_file}: {type(e).__name__}: {e}")
        return 1
    info = step_info(cls)
    try:
        channel.send({"type": "ready", "protocol": PROTOCOL, "info": info})
        return Host(channel, cls).serve()
    except BrokenPipeError:
        note("stdout closed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
