"""``base_steps_syncpack.steps.QueryGQL``: one GraphQL request (``POST {"query", "variables"}``).

A QueryREST whose method is POST and whose payload is built from the
``query`` and ``variables`` parameters. It saves the whole response body
(``{"data": ..., "errors": ...}``). A response with ``errors`` and no
``data`` fails the step (the body is kept as its data); errors next to
partial data are logged as warnings.
"""

import json

from ipaascommon.ipaas_exceptions import InvalidStepParameter, MissingRequiredStepParameter, StepFailedException
from ipaascore import parameter_types

from base_steps_syncpack.steps.QueryREST import QueryREST


class QueryGQL(QueryREST):

    def __init__(self):
        super().__init__()
        self.friendly_name = "Query GraphQL"
        self.description = "Sends a GraphQL query (POST {query, variables}) and saves the response"
        self.version = "1.0.0"
        del self.parameters["method"]
        del self.parameters["payload"]
        rel = self.parameters["relative_url"]
        rel.default_value = "/gql"
        if self._sf_params.get("relative_url") is None:
            rel.value = "/gql"
        self.new_step_parameter(name="query", description="The GraphQL query", required=True,
                                param_type=parameter_types.StringParameterLong())
        self.new_step_parameter(name="variables", description="The query's variables (an object "
                                "or a JSON string)", default_value={},
                                param_type=parameter_types.ObjectParameter())

    def _param(self, name, default=None):
        if name == "method":
            return "POST"
        if name == "payload":
            query = self.get_parameter("query")
            if not isinstance(query, str) or not query.strip():
                raise MissingRequiredStepParameter("missing required step parameter 'query'")
            variables = self.get_parameter("variables", {})
            if isinstance(variables, str):
                try:
                    variables = json.loads(variables) if variables.strip() else {}
                except ValueError:
                    raise InvalidStepParameter("parameter \"variables\" is not JSON")
            return {"query": query, "variables": variables or {}}
        return super()._param(name, default)

    def execute(self):
        super().execute()
        body = self.get_current_saved_data()
        if isinstance(body, dict) and body.get("errors"):
            errors = body["errors"]
            first = errors[0] if isinstance(errors, list) and errors else errors
            message = first.get("message") if isinstance(first, dict) else str(first)
            if body.get("data") is None:
                raise StepFailedException(f"GraphQL error: {message}")
            self.logger.warning("GraphQL returned data with errors: %s", message)
