"""Driving agents: one interface (:mod:`.base`), loading from files (:mod:`.loading`).

Concrete agents (the modular stack, the expert, learned policies) are imported lazily by
the loader, so ``import e2e_drive.agents`` stays light (no torch).
"""

from e2e_drive.agents.base import (
    ActResult,
    AgentNeeds,
    BaseAgent,
    CameraNeed,
    DrivingAgent,
    InvalidActionError,
    InvalidObservationError,
    agent_needs,
    agent_timings_ms,
    call_act,
    check_observation,
    validate_action,
)
from e2e_drive.agents.loading import AGENT_TYPES, load_agent, load_agent_file

__all__ = [
    "AGENT_TYPES",
    "ActResult",
    "AgentNeeds",
    "BaseAgent",
    "CameraNeed",
    "DrivingAgent",
    "InvalidActionError",
    "InvalidObservationError",
    "agent_needs",
    "agent_timings_ms",
    "call_act",
    "check_observation",
    "load_agent",
    "load_agent_file",
    "validate_action",
]
