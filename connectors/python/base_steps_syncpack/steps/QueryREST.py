"""``base_steps_syncpack.steps.QueryREST``: one HTTP request, for Python steps to subclass.

The same parameters and output as stepflow's built-in QueryREST (docs/steps.md),
in pure Python (urllib). Subclasses typically change parameters, call
``super().execute()`` and post-process ``self.get_current_saved_data()``.

Success saves the response body parsed as JSON (else its text; an empty body
with a ``Location`` header gives ``{"location": ...}``, and a 201 whose JSON
object body lacks one gets a ``"location"`` key). An unexpected status saves
``{"http_code", "headers", "body"}`` and raises ``StepFailedException``.
"""

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from ipaascommon.ipaas_exceptions import (InvalidStepParameter, MissingRequiredStepParameter,
                                          StepFailedException)
from ipaascommon.ipaas_utils import str_to_bool
from ipaascore import parameter_types
from ipaascore.BaseStep import BaseStep

# The key under which SL1 REST list results carry each object's URI.
OBJECT_KEY_VAL = "URI"

DEFAULT_TIMEOUT = 60


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed (like the built-in QueryREST): a 3xx is a status like any other."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def join_url(prefix, relative):
    prefix = str(prefix or "")
    relative = str(relative or "")
    if not relative:
        return prefix
    if relative[0] in "?#":
        return prefix + relative
    return prefix.rstrip("/") + "/" + relative.lstrip("/")


def _parse_body(raw, content_type=""):
    charset = "utf-8"
    for part in (content_type or "").split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.lower() == "charset" and v:
            charset = v.strip('"')
    try:
        text = raw.decode(charset, "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    if not text.strip():
        return text, False
    try:
        return json.loads(text), True
    except ValueError:
        return text, False


def _headers_dict(headers):
    out = {}
    for k, v in headers.items():
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


class QueryREST(BaseStep):
    OBJECT_KEY_VAL = OBJECT_KEY_VAL

    def __init__(self):
        self.friendly_name = "Query REST"
        self.description = "Sends one HTTP request to prefix_url + relative_url and saves the response"
        self.version = "1.0.0"
        self.new_step_parameter(name="prefix_url", description="Base URL, e.g. https://sl1.example.com "
                                "(required; a subclass may set it before calling execute())",
                                default_value=None, required=False,
                                sample_value="https://sl1.example.com",
                                param_type=parameter_types.StringParameterShort())
        self.new_step_parameter(name="relative_url", description="Path appended to prefix_url",
                                default_value="", param_type=parameter_types.StringParameterShort())
        self.new_step_parameter(name="method", description="HTTP method", default_value="GET",
                                param_type=parameter_types.StringParameterShort())
        self.new_step_parameter(name="payload", description="Request body: an object or list is sent "
                                "as JSON, a string as is", default_value=None,
                                param_type=parameter_types.ObjectParameter())
        self.new_step_parameter(name="headers", description="Header name to value", default_value={},
                                param_type=parameter_types.ObjectParameter())
        self.new_step_parameter(name="user", description="User for basic authentication",
                                default_value="", param_type=parameter_types.StringParameterShort())
        self.new_step_parameter(name="password", description="Password for basic authentication",
                                default_value="", param_type=parameter_types.StringParameterShort())
        self.new_step_parameter(name="verify_ssl", description="Verify the server's TLS certificate",
                                default_value=True, param_type=parameter_types.BoolParameterToggle())
        self.new_step_parameter(name="timeout", description="Request timeout in seconds",
                                default_value=DEFAULT_TIMEOUT, param_type=parameter_types.NumberParameter())

    # The request, reusable by subclasses ------------------------------------------

    def _param(self, name, default=None):
        return self.get_parameter(name, default)

    def build_request(self):
        prefix = self._param("prefix_url")
        if not isinstance(prefix, str) or not prefix.strip():
            raise MissingRequiredStepParameter("missing required step parameter 'prefix_url'")
        url = join_url(prefix.strip(), self._param("relative_url", ""))
        method = str(self._param("method", "GET") or "GET").strip().upper()
        if not method.isalpha():
            raise InvalidStepParameter(f"parameter \"method\" is not an HTTP method: {method!r}")
        headers = self._param("headers", {}) or {}
        if isinstance(headers, str):
            try:
                headers = json.loads(headers)
            except ValueError:
                raise InvalidStepParameter("parameter \"headers\" must be an object of name to value")
        if not isinstance(headers, dict):
            raise InvalidStepParameter("parameter \"headers\" must be an object of name to value")
        headers = {str(k): str(v) for k, v in headers.items() if v is not None}
        lower = {k.lower() for k in headers}

        payload = self._param("payload")
        body = None
        if method != "HEAD" and payload is not None:
            if isinstance(payload, (dict, list, bool, int, float)):
                body = json.dumps(payload).encode("utf-8")
                if "content-type" not in lower:
                    headers["Content-Type"] = "application/json"
            elif isinstance(payload, (bytes, bytearray)):
                body = bytes(payload)
            else:
                body = str(payload).encode("utf-8")

        user = self._param("user") or self._param("username") or ""
        password = self._param("password") or ""
        if user and "authorization" not in lower:
            token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        bearer = self._param("bearer_token") or ""
        if bearer and not user and "authorization" not in lower:
            headers["Authorization"] = f"Bearer {bearer}"
        if "accept" not in lower:
            headers["Accept"] = "application/json, */*;q=0.5"
        return urllib.request.Request(url, data=body, headers=headers, method=method)

    def _timeout(self):
        t = self._param("timeout", DEFAULT_TIMEOUT)
        try:
            t = float(t)
        except (TypeError, ValueError):
            return DEFAULT_TIMEOUT
        return t if t > 0 else DEFAULT_TIMEOUT

    def _opener(self):
        verify = self._param("verify_ssl")
        if verify is None:
            verify = self._param("verify", True)
        handlers = [_NoRedirect()]
        if not str_to_bool(verify, True):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        proxy = self._param("proxy") or ""
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {}))
        return urllib.request.build_opener(*handlers)

    def _expected(self, code):
        expected = self._param("expected_status")
        if expected is None:
            return 200 <= code < 300
        if not isinstance(expected, list):
            expected = [expected]
        try:
            return code in {int(x) for x in expected}
        except (TypeError, ValueError):
            raise InvalidStepParameter("parameter \"expected_status\" must be a status code or a list of them")

    def send_request(self):
        """Sends the request; returns ``(code, headers_dict, parsed_body)``. Transport errors raise StepFailedException."""
        req = self.build_request()
        self.logger.debug("%s %s", req.get_method(), req.full_url)
        started = time.monotonic()
        try:
            resp = self._opener().open(req, timeout=self._timeout())
        except urllib.error.HTTPError as e:
            resp = e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise StepFailedException(f"{req.get_method()} {req.full_url}: {reason}") from None
        try:
            raw = resp.read() or b""
        except OSError as e:
            raise StepFailedException(f"{req.get_method()} {req.full_url}: {e}") from None
        finally:
            resp.close()
        code = resp.status if getattr(resp, "status", None) is not None else resp.code
        self.logger.info("HTTP %s in %d ms", code, (time.monotonic() - started) * 1000)
        headers = _headers_dict(resp.headers)
        body, _ = _parse_body(raw, resp.headers.get("Content-Type", ""))
        return req, code, headers, body

    def execute(self):
        req, code, headers, body = self.send_request()
        if not self._expected(code):
            self.save_data_for_next_step({"http_code": code, "headers": headers, "body": body})
            raise StepFailedException(f"{req.get_method()} {req.full_url} returned HTTP {code}")
        location = next((v for k, v in headers.items() if k.lower() == "location"), None)
        if location and (body == "" or body is None):
            body = {"location": location}
        elif location and code == 201 and isinstance(body, dict) and "location" not in body:
            body["location"] = location
        self.save_data_for_next_step(body)
