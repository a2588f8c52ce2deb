"""Exceptions PowerFlow steps import from ``ipaascommon.ipaas_exceptions``.

The step host treats ``StepFailedException`` (and subclasses) as a clean
failure: the result's error is the exception's message. Any other exception
fails the step with ``"<ExceptionType>: <message>"`` and its traceback logged.
"""


class IpaasException(Exception):
    """Base of the ipaascommon exceptions."""


class StepFailedException(IpaasException):
    """Raise from ``execute()`` to fail the step with this message.

    Data saved with ``save_data_for_next_step`` before the raise is kept as
    the failed step's data.
    """


class StepException(StepFailedException):
    """A generic step failure (a StepFailedException)."""


class MissingRequiredStepParameter(IpaasException):
    """A parameter declared ``required=True`` has no value (raised before ``execute()``)."""


class InvalidStepParameter(IpaasException):
    """A parameter has a value of the wrong shape."""


class StepTimeoutException(StepFailedException):
    """A step gave up waiting for something."""


class CacheException(IpaasException):
    """A cache operation failed (the runtime answered ``ok: false``)."""


class CacheKeyNotFound(CacheException):
    """Raised by helpers that require a key to exist."""


class ReportException(IpaasException):
    """A report could not be built or saved."""


class ConfigurationException(IpaasException):
    """A configuration value is missing or invalid."""
