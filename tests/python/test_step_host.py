"""Tests of connectors/python/stepflow_step_host.py, speaking the step protocol to it.

Run: cd tests/python && /usr/bin/python3 -m unittest -v test_step_host
Stdlib only; every wait is bounded; the only network is a loopback HTTP server.
"""

import base64
import http.server
import json
import os
import pickle
import queue
import subprocess
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
HOST = os.path.join(ROOT, "connectors", "python", "stepflow_step_host.py")
PACK = os.path.join(HERE, "fixtures", "stepflow_test_syncpack")
TIMEOUT = 20


def step_file(name):
    return os.path.join(PACK, "steps", f"{name}.py")


class StepHost:
    """One host process. ``run()`` plays the runtime for one task."""

    def __init__(self, path, *extra):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [PYTHON, HOST, "--step-file", path, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=os.path.dirname(path), env=env)
        self.lines = queue.Queue()
        self.raw_stdout = []
        self.stderr = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        self.ready = self.read()
        self.tasks = 0

    def _pump_out(self):
        for line in self.proc.stdout:
            self.raw_stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def read(self, timeout=TIMEOUT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the host within {timeout} s; stderr: {''.join(self.stderr)}")
        if line is None:
            raise AssertionError(f"host closed stdout; stderr: {''.join(self.stderr)}")
        obj = json.loads(line)  # every stdout line must be a JSON object
        assert isinstance(obj, dict), line
        return obj

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    def run(self, params=None, inputs=(), app_variables=None, configuration=None,
            log_level=10, cache=None, name="Step", application="test_app"):
        """Sends one task; returns (result, logs, cache_requests). Answers cache requests from ``cache``."""
        self.tasks += 1
        tid = f"isapp-test:{self.tasks}"
        self.send({"type": "run", "protocol": 1, "id": tid, "run_id": "isapp-test",
                   "application": application,
                   "step": {"name": name, "file": "X", "syncpack": "stepflow_test_syncpack"},
                   "params": params or {}, "inputs": [{"name": n, "data": d} for n, d in inputs],
                   "app_variables": app_variables or {}, "configuration": configuration or {},
                   "log_level": log_level})
        logs, requests = [], []
        while True:
            msg = self.read()
            assert msg.get("id") == tid, msg
            if msg["type"] == "log":
                logs.append((msg["level"], msg["message"]))
            elif msg["type"] == "cache":
                requests.append(msg)
                self.send(self._answer(msg, cache if cache is not None else {}))
            elif msg["type"] == "result":
                return msg, logs, requests
            else:
                raise AssertionError(f"unexpected message {msg}")

    @staticmethod
    def _answer(msg, cache):
        op, key = msg["op"], msg["key"]
        reply = {"type": "cache_result", "id": msg["id"], "request": msg["request"], "ok": True}
        if op == "get":
            reply["value"] = cache.get(key)
        elif op == "save":
            cache[key] = msg["value"]
            reply["value"] = True
        elif op == "delete":
            reply["value"] = cache.pop(key, None) is not None
        else:
            reply = {**reply, "ok": False, "error": f"unknown op {op}"}
        return reply

    def close(self):
        """Closes stdin; returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


class HostTest(unittest.TestCase):

    def host(self, name, *extra):
        h = StepHost(step_file(name), *extra)
        self.addCleanup(h.kill)
        return h

    # -- start, info, end ---------------------------------------------------------

    def test_ready_info_and_eof_exit(self):
        h = self.host("ParamStep")
        self.assertEqual(h.ready["type"], "ready")
        self.assertEqual(h.ready["protocol"], 1)
        info = h.ready["info"]
        self.assertEqual(info["friendly_name"], "Param Step")
        self.assertEqual(info["description"], "Reports its parameters and context")
        self.assertEqual(info["version"], "2.1.0")
        params = {p["name"]: p for p in info["parameters"]}
        self.assertEqual(list(params), ["greeting", "target", "excluded_devices", "loud",
                                        "mapping", "limit", "region"])
        self.assertEqual(params["greeting"], {"name": "greeting", "description": "How to greet",
                                              "required": False, "default_value": "hello",
                                              "type": "string"})
        self.assertTrue(params["target"]["required"])
        self.assertEqual(params["excluded_devices"]["type"], "array")
        self.assertEqual(params["loud"]["type"], "boolean")
        self.assertEqual(params["mapping"]["type"], "object")
        self.assertEqual(params["limit"]["type"], "number")
        self.assertEqual(params["region"]["default_value"], "ScienceLogicRegion")
        self.assertEqual(h.close(), 0)

    def test_eof_right_away_exits_zero(self):
        h = self.host("DummyStep")
        self.assertEqual(h.ready["info"]["friendly_name"], "DummyStep")
        self.assertEqual(h.close(), 0)

    def test_failing_constructor_gives_minimal_info_and_failed_tasks(self):
        h = self.host("BrokenInit")
        self.assertEqual(h.ready["info"]["friendly_name"], "BrokenInit")
        self.assertEqual(h.ready["info"]["description"], "A step whose constructor fails.")
        self.assertEqual(h.ready["info"]["parameters"], [])
        result, logs, _ = h.run()
        self.assertFalse(result["ok"])
        self.assertEqual(result["error"], "RuntimeError: no database here")
        self.assertNotIn("data", result)
        self.assertTrue(any(lvl == "error" and "Traceback" in m for lvl, m in logs), logs)
        self.assertEqual(h.close(), 0)

    def test_unloadable_step_exits_nonzero_with_reason_on_stderr(self):
        proc = subprocess.run([PYTHON, HOST, "--step-file", step_file("NoSuchStep")],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, b"")
        self.assertIn(b"no step file", proc.stderr)

    # -- the official template steps ------------------------------------------------

    def test_dummy_step_saves_foo(self):
        h = self.host("DummyStep")
        result, logs, _ = h.run(params={"dummy_step_parameter": "dummy_string"})
        self.assertEqual(result, {"type": "result", "id": "isapp-test:1", "ok": True, "data": "foo"})
        # The runtime, not the host, logs "Saved data for next step" (once).
        self.assertFalse(any("Saved data" in message for _, message in logs))

    def test_dummy_step2_joins_previous_data(self):
        h = self.host("DummyStep2")
        self.assertEqual(h.ready["info"]["friendly_name"], "Dummy Step 2")
        result, logs, _ = h.run(inputs=[("Dummy Step", "foo")])
        self.assertEqual(result["data"], "foo")
        self.assertIn(("debug", "prev_data: foo"), logs)
        result, _, _ = h.run(inputs=[("A", [1]), ("B", {"x": 2})])
        self.assertEqual(result["data"], {"A": [1], "B": {"x": 2}})
        result, _, _ = h.run(inputs=[])
        self.assertEqual(result, {"type": "result", "id": "isapp-test:3", "ok": True, "data": None})

    # -- parameters and context -----------------------------------------------------------

    def test_parameters_defaults_and_context(self):
        h = self.host("ParamStep")
        result, _, _ = h.run(
            params={"target": "world", "loud": "yes", "region": "EU"},
            inputs=[("First", {"a": 1}), ("Second", [2, 3])],
            app_variables={"sl1_host": "10.0.0.1"},
            configuration={"sl1_user": "em7admin", "sl1_password": "s3cr3t-pass"},
            name="Greet", application="greeter")
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {
            "message": "HELLO world", "excluded": [], "region": "EU",
            "shared_default_untouched": "ScienceLogicRegion", "limit": 10,
            "undeclared": "fallback", "app_variable": "10.0.0.1", "config_user": "em7admin",
            "application_name": "greeter", "step_name": "Greet",
            "positions": [["First", 1], ["Second", 2]], "by_order_1": {"a": 1},
            "by_order_0_target": "world", "by_name": [2, 3], "additional_data": None})
        result, _, _ = h.run(params={"target": "you", "greeting": "hi", "excluded_devices": ["d1"],
                                     "undeclared": "given"})
        self.assertEqual(result["data"]["message"], "hi you")
        self.assertEqual(result["data"]["excluded"], ["d1"])
        self.assertEqual(result["data"]["region"], "ScienceLogicRegion")
        self.assertEqual(result["data"]["undeclared"], "given")
        self.assertIsNone(result["data"]["by_name"])
        self.assertEqual(result["data"]["positions"], [])

    def test_missing_required_parameter(self):
        h = self.host("ParamStep")
        for params in ({}, {"target": None}):
            result, logs, _ = h.run(params=params)
            self.assertFalse(result["ok"])
            self.assertEqual(result["error"],
                             "MissingRequiredStepParameter: missing required step parameter 'target'")
            self.assertNotIn("data", result)
        result, _, _ = h.run(params={"target": ""})
        self.assertTrue(result["ok"], result)

    # -- failures -------------------------------------------------------------------------

    def test_step_failed_exception(self):
        h = self.host("FailStep")
        result, logs, _ = h.run()
        self.assertEqual(result, {"type": "result", "id": "isapp-test:1", "ok": False,
                                  "error": "device 7 not found in SL1", "data": {"partial": True}})
        self.assertFalse(any("Traceback" in m for _, m in logs))

    def test_generic_exception(self):
        h = self.host("FailStep")
        result, logs, _ = h.run(params={"mode": "crash"})
        self.assertFalse(result["ok"])
        self.assertEqual(result["error"], "KeyError: 'missing'")
        self.assertEqual(result["data"], {"partial": True})
        tracebacks = [m for lvl, m in logs if lvl == "error" and m.startswith("Traceback")]
        self.assertEqual(len(tracebacks), 1, logs)
        self.assertIn("FailStep.py", tracebacks[0])
        self.assertIn("in helper", tracebacks[0])
        self.assertNotIn("stepflow_step_host.py", tracebacks[0])
        # the process stays usable
        result, _, _ = h.run()
        self.assertEqual(result["error"], "device 7 not found in SL1")
        self.assertEqual(h.close(), 0)

    # -- stdout protection and logging ----------------------------------------------------

    def test_print_does_not_corrupt_stdout_and_logs_arrive(self):
        h = self.host("NoisyStep")
        result, logs, _ = h.run(configuration={"sl1_password": "s3cr3t-pass"}, log_level=10)
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {"stdin": ""})
        self.assertEqual(h.close(), 0)
        # every stdout line was protocol JSON; the prints went to stderr
        for line in h.raw_stdout:
            json.loads(line)
        self.assertFalse(any(b"fake" in line for line in h.raw_stdout))
        err = "".join(h.stderr)
        for text in ("printing in __init__", "plain print", "sys.stdout.write", "os.write to fd 1",
                     "child process output", '"id": "fake"'):
            self.assertIn(text, err)
        self.assertIn(("debug", "a debug line"), logs)
        self.assertIn(("info", "an info line 42"), logs)
        self.assertIn(("flow", "a flow line"), logs)
        self.assertIn(("warning", "a warning line"), logs)
        self.assertIn(("error", "an error line"), logs)
        self.assertIn(("error", "a critical line"), logs)
        self.assertIn(("warning", "a module logger line"), logs)
        self.assertIn(("info", "password is ***"), logs)
        caught = [m for lvl, m in logs if lvl == "error" and m.startswith("caught it")]
        self.assertEqual(len(caught), 1)
        self.assertIn("KeyError: 'inner'", caught[0])
        self.assertFalse(any("s3cr3t-pass" in m for _, m in logs))

    def test_log_level_filters_lines(self):
        h = self.host("NoisyStep")
        _, logs, _ = h.run(log_level=30)
        levels = {lvl for lvl, _ in logs}
        self.assertEqual(levels, {"warning", "error"})
        _, logs, _ = h.run(log_level=20)
        self.assertIn(("flow", "a flow line"), logs)
        self.assertNotIn(("debug", "a debug line"), logs)

    # -- cache ----------------------------------------------------------------------------

    def test_cache_round_trip(self):
        h = self.host("CacheStep")
        cache = {}
        result, _, requests = h.run(params={"region": "EU"}, cache=cache)
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {
            "before": None, "after_sys_id": "abc", "raw_is_bytes": True, "deleted": True,
            "gone": None, "deleted_again": False, "batch_keys": ["batch_0", "batch_1", "batch_2"],
            "rebuilt": [0, 1, 2, 3, 4]})
        first = requests[0]
        self.assertEqual((first["op"], first["key"], first["request"]), ("get", "lookup_EU", 1))
        save = requests[1]
        self.assertEqual(save["op"], "save")
        self.assertEqual(save["ttl"], 60)
        self.assertEqual(save["value"], {"sys_id": "abc", "raw": {"__bytes_b64__": "AAE="}})
        self.assertEqual([r["request"] for r in requests], list(range(1, len(requests) + 1)))
        self.assertEqual(sorted(cache), ["batch"])  # the batches were removed, the index stays
        # a failing cache answer fails the step
        h.send({"type": "run", "id": "t-fail", "params": {}, "inputs": [], "log_level": 20})
        req = h.read()
        self.assertEqual(req["type"], "cache")
        h.send({"type": "cache_result", "id": "t-fail", "request": req["request"], "ok": False,
                "error": "LMDB is full"})
        result = h.read()
        while result["type"] == "log":
            result = h.read()
        self.assertEqual(result["type"], "result")
        self.assertFalse(result["ok"])
        self.assertEqual(result["error"], "CacheException: cache get failed: LMDB is full")

    def test_eof_while_waiting_for_cache_answer(self):
        h = self.host("CacheStep")
        h.send({"type": "run", "id": "t1", "params": {}, "inputs": [], "log_level": 40})
        self.assertEqual(h.read()["type"], "cache")
        h.proc.stdin.close()
        result = h.read()
        while result["type"] == "log":
            result = h.read()
        self.assertFalse(result["ok"])
        self.assertIn("stdin closed", result["error"])
        self.assertEqual(h.proc.wait(timeout=TIMEOUT), 0)

    def test_report_saved_to_cache(self):
        h = self.host("ReportStep")
        cache = {}
        result, logs, _ = h.run(cache=cache, application="snow_sync")
        self.assertTrue(result["ok"], result)
        rid = result["data"]["report_id"]
        self.assertTrue(rid.startswith("snow_sync-Sync Report-"))
        self.assertEqual(result["data"]["report"]["sections"],
                         {"tmp section": {}, "devices": {"Device": ["d1", "d2"], "Status": ["ok", "failed"]}})
        self.assertEqual(cache[f"report_{rid}"]["report_id"], rid)
        self.assertIn(("flow", f"Link: https://is_host/reports/{rid}"), logs)

    # -- instances, imports, bytes --------------------------------------------------------

    def test_fresh_instance_per_task_module_imported_once(self):
        h = self.host("StatefulStep")
        for n in (1, 2, 3):
            result, _, _ = h.run(params={"n": n})
            self.assertTrue(result["ok"], result)
            self.assertEqual(result["data"], {"seen": [n], "imports": 1, "tasks": n, "param_count": 0})

    def test_sibling_import_and_subclass(self):
        h = self.host("SiblingStep")
        self.assertEqual([p["name"] for p in h.ready["info"]["parameters"]], ["region"])
        result, _, _ = h.run(params={"region": "APAC"})
        self.assertEqual(result["data"], {"parent_saved": "foo", "region": "APAC"})

    def test_syncpack_alias(self):
        h = self.host("DummyStep", "--syncpack", "renamed_pack", "--class", "DummyStep")
        result, _, _ = h.run()
        self.assertEqual(result["data"], "foo")

    def test_bytes_round_trip(self):
        writer = self.host("BytesStep")
        result, _, _ = writer.run(params={"mode": "write"}, name="Write Bytes")
        self.assertTrue(result["ok"], result)
        data = result["data"]
        self.assertEqual(list(data), ["__bytes_b64__"])
        raw = base64.b64decode(data["__bytes_b64__"])
        self.assertEqual(raw[:1], pickle.dumps(None)[:1])
        # the runtime hands the JSON on unchanged; the reader gets bytes back
        reader = self.host("BytesStep")
        result, _, _ = reader.run(params={"mode": "read"}, inputs=[("Write Bytes", data)])
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {
            "type": "bytes", "joined_is_bytes": True, "names": ["d1", "d2"], "ids": [1, 2],
            "echo": {"__bytes_b64__": base64.b64encode(raw[:2]).decode()}})

    def test_wrong_protocol_and_unknown_messages(self):
        h = self.host("DummyStep")
        h.send({"type": "hello"})
        h.send({"type": "run", "protocol": 2, "id": "p2"})
        result = h.read()
        self.assertEqual(result["id"], "p2")
        self.assertFalse(result["ok"])
        self.assertIn("protocol 1", result["error"])
        result, _, _ = h.run()
        self.assertTrue(result["ok"])
        self.assertEqual(h.close(), 0)


# -- QueryREST / QueryGQL against a loopback server ---------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def _reply(self, code, body=None, headers=()):
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None and not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).requests.append({"method": self.command, "path": self.path,
                                    "headers": dict(self.headers), "body": body})
        return body

    def do_GET(self):
        self._record()
        if self.path == "/api/device":
            self._reply(200, {"result_set": [{"URI": "/api/device/1", "description": "dev1"},
                                             {"URI": "/api/device/2", "description": "dev2"}],
                              "total_matched": 2})
        elif self.path == "/api/broken":
            self._reply(500, {"error": "boom"}, headers=[("X-Test", "a"), ("X-Test", "b")])
        elif self.path == "/moved":
            self._reply(302, None, headers=[("Location", "/api/device")])
        else:
            self._reply(404, b"nothing here", headers=[("Content-Type", "text/plain")])

    def do_POST(self):
        body = self._record()
        if self.path == "/api/device":
            self._reply(201, None, headers=[("Location", "/api/device/42")])
        elif self.path == "/api/ticket":
            self._reply(201, {"number": "INC1"}, headers=[("Location", "/api/ticket/7")])
        elif self.path == "/gql":
            q = json.loads(body)
            if "bad" in q["query"]:
                self._reply(200, {"data": None, "errors": [{"message": "Cannot query field bad"}]})
            else:
                self._reply(200, {"data": {"devices": {"edges": [{"node": {"id": "1"}}]},
                                           "echo": q["variables"]}})
        else:
            self._reply(404, b"")


class QueryRESTTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        cls.server.daemon_threads = True
        cls.url = f"http://127.0.0.1:{cls.server.server_address[1]}"
        cls.thread = threading.Thread(target=cls.server.serve_forever, kwargs={"poll_interval": 0.1},
                                      daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.thread.join(timeout=TIMEOUT)

    def setUp(self):
        _Handler.requests.clear()

    def host(self, path):
        h = StepHost(path)
        self.addCleanup(h.kill)
        return h

    def test_subclass_success(self):
        h = self.host(step_file("FetchDevices"))
        self.assertEqual(h.ready["info"]["friendly_name"], "Fetch Devices")
        result, logs, _ = h.run(params={"prefix_url": self.url})
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {"devices": [{"id": "1", "description": "dev1"},
                                                      {"id": "2", "description": "dev2"}]})
        self.assertIn(("debug", f"GET {self.url}/api/device"), logs)
        self.assertTrue(any(lvl == "info" and m.startswith("HTTP 200 in ") for lvl, m in logs), logs)
        self.assertEqual(_Handler.requests[0]["method"], "GET")

    def test_subclass_post_201_location(self):
        h = self.host(step_file("FetchDevices"))
        result, logs, _ = h.run(params={"prefix_url": self.url + "/", "relative_url": "api/device",
                                        "method": "post", "payload": {"name": "new"},
                                        "user": "em7admin", "password": "s3cr3t-pass"})
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {"new_id": "42", "location": "/api/device/42"})
        req = _Handler.requests[0]
        self.assertEqual((req["method"], req["path"]), ("POST", "/api/device"))
        self.assertEqual(json.loads(req["body"]), {"name": "new"})
        self.assertEqual(req["headers"]["Content-Type"], "application/json")
        self.assertEqual(req["headers"]["Authorization"],
                         "Basic " + base64.b64encode(b"em7admin:s3cr3t-pass").decode())
        self.assertFalse(any("s3cr3t" in m for _, m in logs))

    def test_201_with_json_body_gets_location_key(self):
        h = self.host(os.path.join(ROOT, "connectors", "python", "base_steps_syncpack", "steps",
                                   "QueryREST.py"))
        self.assertEqual(h.ready["info"]["friendly_name"], "Query REST")
        result, _, _ = h.run(params={"prefix_url": self.url, "relative_url": "/api/ticket",
                                     "method": "POST", "payload": "raw text",
                                     "headers": {"Content-Type": "text/plain"}})
        self.assertEqual(result["data"], {"number": "INC1", "location": "/api/ticket/7"})
        self.assertEqual(_Handler.requests[0]["body"], b"raw text")
        self.assertEqual(_Handler.requests[0]["headers"]["Content-Type"], "text/plain")

    def test_subclass_http_failure(self):
        h = self.host(step_file("FetchDevices"))
        result, _, _ = h.run(params={"prefix_url": self.url, "relative_url": "/api/broken"})
        self.assertFalse(result["ok"])
        self.assertEqual(result["error"], f"GET {self.url}/api/broken returned HTTP 500")
        data = result["data"]
        self.assertEqual(data["http_code"], 500)
        self.assertEqual(data["body"], {"error": "boom"})
        self.assertEqual(data["headers"]["X-Test"], "a, b")
        self.assertEqual(data["headers"]["Content-Type"], "application/json")
        # redirects are not followed; a text body stays text
        result, _, _ = h.run(params={"prefix_url": self.url, "relative_url": "/moved"})
        self.assertEqual(result["data"]["http_code"], 302)
        result, _, _ = h.run(params={"prefix_url": self.url, "relative_url": "/nope"})
        self.assertEqual(result["data"]["body"], "nothing here")
        result, _, _ = h.run(params={"prefix_url": self.url, "relative_url": "/moved",
                                     "expected_status": [302]})
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"], {"new_id": "device", "location": "/api/device"})

    def test_transport_error_and_missing_prefix(self):
        h = self.host(step_file("FetchDevices"))
        result, _, _ = h.run(params={})
        self.assertEqual(result["error"], "MissingRequiredStepParameter: missing required step parameter 'prefix_url'")
        # a port that was just free: connection refused
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        result, _, _ = h.run(params={"prefix_url": f"http://127.0.0.1:{port}", "timeout": 5})
        self.assertFalse(result["ok"])
        self.assertTrue(result["error"].startswith(f"GET http://127.0.0.1:{port}/api/device: "), result)
        self.assertNotIn("data", result)

    def test_query_gql(self):
        h = self.host(os.path.join(ROOT, "connectors", "python", "base_steps_syncpack", "steps",
                                   "QueryGQL.py"))
        names = [p["name"] for p in h.ready["info"]["parameters"]]
        self.assertIn("query", names)
        self.assertNotIn("method", names)
        result, _, _ = h.run(params={"prefix_url": self.url, "query": "{ devices { edges { node { id } } } }",
                                     "variables": '{"first": 1}'})
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["data"]["data"]["echo"], {"first": 1})
        req = _Handler.requests[0]
        self.assertEqual((req["method"], req["path"]), ("POST", "/gql"))
        result, _, _ = h.run(params={"prefix_url": self.url, "query": "{ bad }"})
        self.assertFalse(result["ok"])
        self.assertEqual(result["error"], "GraphQL error: Cannot query field bad")
        self.assertEqual(result["data"]["errors"][0]["message"], "Cannot query field bad")
        result, _, _ = h.run(params={"prefix_url": self.url})
        self.assertEqual(result["error"], "MissingRequiredStepParameter: missing required step parameter 'query'")


if __name__ == "__main__":
    unittest.main()
