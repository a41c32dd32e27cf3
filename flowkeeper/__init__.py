"""Flowkeeper: durable steps and business processes in your own database.

>>> import flowkeeper as fk
>>> engine = fk.Engine("sqlite://")
"""

from flowkeeper.engine import Engine
from flowkeeper.errors import (
    ConcurrencyError,
    ConfigurationError,
    DatabaseUnavailable,
    FailStep,
    FlowkeeperError,
    InvalidArgument,
    InvalidDatabaseURL,
    InvalidStep,
    MigrationRequired,
    NaiveDatetimeError,
    SchemaNewerThanCode,
    SingletonExists,
    StepAlreadyRegistered,
    StepNotFound,
)
from flowkeeper.steps.context import Outcome, StepContext
from flowkeeper.steps.model import Retry, Search, Step, StepRecord
from flowkeeper.steps.worker import RunStats

__all__ = [
    "ConcurrencyError",
    "ConfigurationError",
    "DatabaseUnavailable",
    "Engine",
    "FailStep",
    "FlowkeeperError",
    "InvalidArgument",
    "InvalidDatabaseURL",
    "InvalidStep",
    "MigrationRequired",
    "NaiveDatetimeError",
    "Outcome",
    "Retry",
    "RunStats",
    "SchemaNewerThanCode",
    "Search",
    "SingletonExists",
    "Step",
    "StepAlreadyRegistered",
    "StepContext",
    "StepNotFound",
    "StepRecord",
]

__version__ = "0.1.0"
