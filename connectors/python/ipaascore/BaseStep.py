"""``ipaascore.BaseStep``: the base class of PowerFlow Python steps, for stepflow.

ScienceLogic's own templates never call ``super().__init__()``, so every
piece of state is created by ``BaseStep.__new__`` (and again, idempotently, by
``BaseStep.__init__``); class-level defaults cover the rest. The step host
(``stepflow_step_host.py``) creates a fresh instance per task, gives it the
task's context before ``__init__`` runs, then calls ``execute()``.

Outside the host (a plain ``DummyStep()`` in a unit test) the instance has an
empty context: no parameters, no inputs, no app variables; the logger writes
to stderr.
"""

import copy
import logging

from ipaascore import parameter_types

FLOW = 25
logging.addLevelName(FLOW, "FLOW")


class IpaasLogger(logging.Logger):
    """A ``logging.Logger`` with PowerFlow's ``flow`` level (25, between info and warning)."""

    def flow(self, msg, *args, **kwargs):
        if self.isEnabledFor(FLOW):
            self._log(FLOW, msg, args, **kwargs)


def _make_logger():
    previous = logging.getLoggerClass()
    logging.setLoggerClass(IpaasLogger)
    try:
        lg = logging.getLogger("ipaas_logger")
    finally:
        logging.setLoggerClass(previous)
    if not isinstance(lg, IpaasLogger):  # created earlier by someone else
        lg.__class__ = IpaasLogger
    lg.propagate = False
    if lg.level == logging.NOTSET:
        lg.setLevel(logging.INFO)
    return lg


STEP_LOGGER = _make_logger()


class StepParameter:
    """One declared parameter. ``value`` is the task's value (or the default) and may be changed."""

    def __init__(self, name, description="", default_value=None, required=False,
                 sample_value=None, param_type=None, **extra):
        self.name = name
        self.description = description
        self.default_value = default_value
        self.required = bool(required)
        self.sample_value = sample_value
        self.param_type = param_type
        self.value = copy.deepcopy(default_value)
        self.extra = extra

    @property
    def type(self):
        return parameter_types.type_name_of(self.param_type, self.default_value)

    def to_dict(self):
        return {"name": self.name, "description": self.description or "",
                "required": self.required, "default_value": self.default_value,
                "type": self.type}

    def __repr__(self):
        return f"StepParameter(name={self.name!r}, value={self.value!r})"


_UNSET = object()


def _init_state(self):
    d = self.__dict__
    d.setdefault("parameters", {})
    d.setdefault("_sf_params", {})
    d.setdefault("_sf_inputs", [])
    d.setdefault("_sf_app_variables", {})
    d.setdefault("_sf_configuration", {})
    d.setdefault("_sf_saved", _UNSET)
    d.setdefault("_sf_applied", set())


class BaseStep:
    """Subclass it and implement ``execute()`` (or ``execute(self, additional_data=None)``)."""

    friendly_name = None
    description = None
    version = None
    application_name = None
    step_name = None
    run_id = None
    syncpack = None
    logger = STEP_LOGGER

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        _init_state(self)
        return self

    def __init__(self, *args, **kwargs):
        _init_state(self)

    def execute(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    # -- parameters -----------------------------------------------------------

    def new_step_parameter(self, name, description="", default_value=None, required=False,
                           sample_value=None, param_type=None, **extra):
        """Declares a parameter; returns its ``StepParameter``."""
        return self._sf_register(StepParameter(name, description, default_value, required,
                                               sample_value, param_type, **extra))

    def add_step_parameter_from_object(self, param_obj):
        """Declares a parameter from a shared object with ``.name`` (copied, so the shared object is not changed)."""
        name = getattr(param_obj, "name", None)
        if not name:
            raise ValueError("add_step_parameter_from_object: the object has no name")
        if isinstance(param_obj, StepParameter):
            p = copy.copy(param_obj)
            p.value = copy.deepcopy(p.default_value)
        else:
            default = getattr(param_obj, "default_value", getattr(param_obj, "default", None))
            p = StepParameter(name, getattr(param_obj, "description", "") or "", default,
                              getattr(param_obj, "required", False),
                              getattr(param_obj, "sample_value", None),
                              getattr(param_obj, "param_type", None))
        return self._sf_register(p)

    def _sf_register(self, p):
        self.parameters[p.name] = p
        self._sf_apply(p)
        return p

    def _sf_apply(self, p):
        """Gives ``p`` the task's value, once."""
        if id(p) in self._sf_applied:
            return
        self._sf_applied.add(id(p))
        v = self._sf_params.get(getattr(p, "name", None))
        if v is not None:
            try:
                p.value = v
            except AttributeError:
                pass

    def get_parameter(self, name, default=None):
        """The parameter's value: the task's value, else the declared default, else ``default``."""
        params = self.__dict__.get("parameters")
        p = params.get(name) if isinstance(params, dict) else None
        if p is not None:
            v = getattr(p, "value", None)
            if v is None:
                v = getattr(p, "default_value", None)
            return default if v is None else v
        v = self._sf_params.get(name)
        return default if v is None else v

    # -- data from previous steps ---------------------------------------------

    def get_data_from_step_by_name(self, step_name):
        """The data saved by the previous step named ``step_name`` (None if it sent none)."""
        for name, data in self._sf_inputs:
            if name == step_name:
                return data
        self.logger.debug("No data from a step named %r", step_name)
        return None

    def get_available_previous_step_input_positions(self):
        """``[(step_name, position), ...]``; positions start at 1 (0 is this step's arguments)."""
        return [(name, i) for i, (name, _) in enumerate(self._sf_inputs, 1)]

    def get_data_from_step_by_order(self, position):
        """Data by position: 1 is the first previous step; 0 is this step's own arguments."""
        position = int(position)
        if position == 0:
            args = dict(self._sf_params)
            for name in self.parameters:
                args[name] = self.get_parameter(name)
            return args
        if 1 <= position <= len(self._sf_inputs):
            return self._sf_inputs[position - 1][1]
        return None

    def join_previous_step_data(self):
        """None without inputs; one input → its data; several → ``{step_name: data}``."""
        if not self._sf_inputs:
            return None
        if len(self._sf_inputs) == 1:
            return self._sf_inputs[0][1]
        return {name: data for name, data in self._sf_inputs}

    # -- data for the next steps ----------------------------------------------

    def save_data_for_next_step(self, data):
        """Sets the step's output (replacing anything saved before). bytes are allowed."""
        # stepflow itself logs "Saved data for next step: ..." at debug for
        # every step, so the host does not repeat it.
        self._sf_saved = data

    def get_current_saved_data(self):
        """What was saved so far (e.g. by a base step's ``super().execute()``), or None."""
        return None if self._sf_saved is _UNSET else self._sf_saved

    def has_saved_data(self):
        return self._sf_saved is not _UNSET

    # -- variables and configuration ------------------------------------------

    def get_app_variable(self, name, default=None):
        """The run's application variable ``name`` (run parameters override defaults)."""
        return self._sf_app_variables.get(name, default)

    def get_config_value(self, name, default=None):
        """stepflow extension: a value of the aligned configuration object (decrypted)."""
        return self._sf_configuration.get(name, default)

    def get_configuration(self):
        """stepflow extension: a copy of the aligned configuration's values by name."""
        return dict(self._sf_configuration)
