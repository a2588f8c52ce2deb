"""Parameter types for ``new_step_parameter(param_type=...)``.

Each type only describes the parameter (its JSON ``type`` name goes into the
step's ``ready`` info); values are passed to the step as the runtime sends
them, without conversion. A name not defined here (PowerFlow has more types
than are publicly documented) still imports: it becomes a generic type whose
JSON type is guessed from its name (``...String...`` → string, ``...Bool...``
→ boolean, ``...Number/Int/Float...`` → number, ``...Array/List...`` → array,
``...Object/Dict/Mapping/Json...`` → object, else any).
"""


class ParameterType:
    """Base of all parameter types. ``type`` is the JSON type name."""

    type = "any"

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def to_dict(self):
        return {"type": self.type, "class": type(self).__name__}

    def __repr__(self):
        return f"{type(self).__name__}()"


class StringParameter(ParameterType):
    type = "string"


class StringParameterShort(StringParameter):
    pass


class StringParameterLong(StringParameter):
    pass


class PasswordParameter(StringParameter):
    pass


class BoolParameter(ParameterType):
    type = "boolean"


class BoolParameterToggle(BoolParameter):
    pass


class NumberParameter(ParameterType):
    type = "number"


class IntegerParameter(NumberParameter):
    pass


class ArrayParameter(ParameterType):
    type = "array"


class ArrayParameterString(ArrayParameter):
    pass


class ObjectParameter(ParameterType):
    type = "object"


class MappingParameterStaticOneToOne(ObjectParameter):
    """A one-to-one mapping editor, e.g.
    ``MappingParameterStaticOneToOne([], [], "ServiceNow Key", "SL1 Payload Attribute", custom=True)``.
    """

    def __init__(self, left_values=None, right_values=None, left_label="", right_label="",
                 custom=False, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.left_values = list(left_values or [])
        self.right_values = list(right_values or [])
        self.left_label = left_label
        self.right_label = right_label
        self.custom = bool(custom)


class AnyParameter(ParameterType):
    type = "any"


def type_name_of(param_type, default_value=None):
    """The JSON type name for ``param_type`` (an instance, a class or None).

    With no type, it is guessed from ``default_value``.
    """
    if param_type is not None:
        t = getattr(param_type, "type", None)
        if isinstance(t, str) and t:
            return t
        return _guess_from_name(getattr(param_type, "__name__", type(param_type).__name__))
    if isinstance(default_value, bool):
        return "boolean"
    if isinstance(default_value, (int, float)):
        return "number"
    if isinstance(default_value, str):
        return "string"
    if isinstance(default_value, (list, tuple)):
        return "array"
    if isinstance(default_value, dict):
        return "object"
    return "any"


def _guess_from_name(name):
    n = name.lower()
    if "bool" in n or "toggle" in n:
        return "boolean"
    if "array" in n or "list" in n:
        return "array"
    if "mapping" in n or "object" in n or "dict" in n or "json" in n:
        return "object"
    if "number" in n or "int" in n or "float" in n:
        return "number"
    if "string" in n or "text" in n or "password" in n:
        return "string"
    return "any"


_generic = {}


def __getattr__(name):
    """PEP 562: unknown ``Xxx...Parameter...`` names become generic types."""
    if name.startswith("__") or not name[:1].isupper():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = _generic.get(name)
    if cls is None:
        cls = type(name, (ParameterType,), {"type": _guess_from_name(name), "__module__": __name__})
        _generic[name] = cls
    return cls
