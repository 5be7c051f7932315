"""The pilot's errors: configuration it cannot run with, and failed validation with a stable code."""

from __future__ import annotations

from typing import Any, Optional

from updraft.core.errors import UpdraftError

#: failure types, as the factory's monitoring groups them (glideinWMS's validation error types)
WN_RESOURCE = "WN_Resource"
NETWORK = "Network"
VO_CONFIG = "VO_Config"
VO_PROXY = "VO_Proxy"
CONFIG = "Config"
CORRUPTION = "Corruption"
FAILURE_TYPES = (WN_RESOURCE, NETWORK, VO_CONFIG, VO_PROXY, CONFIG, CORRUPTION)


class PilotError(UpdraftError):
    """Anything the pilot refuses to go on with (its parameters: updraft.core.pilotparams.PilotConfigError)."""


class CheckFailed(PilotError):
    """A validation check said no; ``code`` is stable (grouped by origin) for monitoring."""

    def __init__(
        self, check: str, code: int, failure_type: str, message: str, metrics: Optional[dict[str, Any]] = None
    ) -> None:
        self.check = check
        self.code = code
        self.failure_type = failure_type
        self.message = message
        self.metrics = metrics or {}
        super().__init__(f"{check} ({failure_type}, {code}): {message}")
