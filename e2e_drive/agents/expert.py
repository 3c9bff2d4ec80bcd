"""The privileged expert: the modular stack's planning and control fed by ground truth.

It reads ``info`` (``reads_ground_truth=True``) and is the reference line in every
comparison (``is_reference=True``) and the demonstrator for imitation learning.
Configured by ``agents/expert.toml``.
"""

from __future__ import annotations

from e2e_drive.agents.modular.stack import ModularAgent


class ExpertAgent(ModularAgent):
    """OraclePerception -> planner -> controller; the planner and controller are swappable.

    planner / controller and their params: as in :class:`ModularAgent`.
    perception_params: parameters of the oracle perception (e.g. ``range_m``).
    """

    def __init__(
        self,
        planner: str = "rule",
        controller: str = "pure_pursuit",
        perception_params: dict | None = None,
        planner_params: dict | None = None,
        controller_params: dict | None = None,
        policy_frequency_hz: float = 5.0,
    ) -> None:
        super().__init__(
            perception="oracle",
            planner=planner,
            controller=controller,
            perception_params=perception_params,
            planner_params=planner_params,
            controller_params=controller_params,
            policy_frequency_hz=policy_frequency_hz,
            is_reference=True,
        )
