"""Workflow and WorkflowRun specifications (pydantic models).

These models are the single source of truth: the engine validates and plans
from them, the CLI loads YAML into them, and ``szal crds`` generates the CRD
schemas in ``crds/`` from them. This package imports nothing of the project.
"""

from szal.spec.backoff import Backoff, BackoffSettings
from szal.spec.durations import DURATION_PATTERN, DurationError, format_duration, parse_duration
from szal.spec.models import (
    API_VERSION,
    GROUP,
    MAX_MATRIX_INSTANCES,
    VERSION,
    Compensation,
    EnvVar,
    GpuRequest,
    Launcher,
    Matrix,
    Mode,
    ObjectMeta,
    Param,
    ParamType,
    ParamValue,
    PodMetadata,
    PodOptions,
    Resources,
    Retries,
    Step,
    StepTemplate,
    Trigger,
    Workflow,
    WorkflowRef,
    WorkflowRun,
    WorkflowRunSpec,
    WorkflowSpec,
)

__all__ = [
    "API_VERSION",
    "DURATION_PATTERN",
    "GROUP",
    "MAX_MATRIX_INSTANCES",
    "VERSION",
    "Backoff",
    "BackoffSettings",
    "Compensation",
    "DurationError",
    "EnvVar",
    "GpuRequest",
    "Launcher",
    "Matrix",
    "Mode",
    "ObjectMeta",
    "Param",
    "ParamType",
    "ParamValue",
    "PodMetadata",
    "PodOptions",
    "Resources",
    "Retries",
    "Step",
    "StepTemplate",
    "Trigger",
    "Workflow",
    "WorkflowRef",
    "WorkflowRun",
    "WorkflowRunSpec",
    "WorkflowSpec",
    "format_duration",
    "parse_duration",
]
