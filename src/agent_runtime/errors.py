"""Error codes and the service error family.

Every error carries a stable ``code``. Only ``api/`` maps codes to HTTP statuses. Caller errors
(not found, conflict, invalid input) are kept apart from runtime failures (LLM, tool servers) so a
client can tell whose fault a failure is.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    INVALID_STATE = "invalid_state"
    STALE_PLAN_VERSION = "stale_plan_version"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    CONFIG_ERROR = "config_error"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    SELF_APPROVAL_FORBIDDEN = "self_approval_forbidden"
    CONTENT_HASH_MISMATCH = "content_hash_mismatch"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    LLM_ERROR = "llm_error"
    LLM_RATE_LIMITED = "llm_rate_limited"
    LLM_TIMEOUT = "llm_timeout"
    LLM_AUTH = "llm_auth"
    PLAN_INVALID = "plan_invalid"
    TOOL_NOT_ALLOWED = "tool_not_allowed"
    TOOL_ERROR = "tool_error"
    TOOL_TIMEOUT = "tool_timeout"
    TOOL_SERVER_UNAVAILABLE = "tool_server_unavailable"
    STEP_LIMIT_EXCEEDED = "step_limit_exceeded"
    LEASE_LOST = "lease_lost"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal_error"


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


# --- caller errors -------------------------------------------------------------------------


class NotFoundError(ServiceError):
    code = ErrorCode.NOT_FOUND


class InvalidStateError(ServiceError):
    """The task is not in a state that allows this command; ``details`` carry the current state."""

    code = ErrorCode.INVALID_STATE


class StalePlanVersionError(InvalidStateError):
    code = ErrorCode.STALE_PLAN_VERSION


class InputValidationError(ServiceError):
    code = ErrorCode.VALIDATION_ERROR


class PayloadTooLargeError(ServiceError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class AuthenticationError(ServiceError):
    """No credentials, or credentials that do not verify (unknown, revoked or expired key; a token
    with a bad signature, issuer, audience or expiry). The message never repeats the credential."""

    code = ErrorCode.UNAUTHENTICATED


class ForbiddenError(ServiceError):
    """Authenticated, but the principal's roles do not allow this."""

    code = ErrorCode.FORBIDDEN


class SelfApprovalForbiddenError(ForbiddenError):
    code = ErrorCode.SELF_APPROVAL_FORBIDDEN


class ContentHashMismatchError(InvalidStateError):
    """The approval names a plan content hash other than the version's."""

    code = ErrorCode.CONTENT_HASH_MISMATCH


class UnsupportedMediaTypeError(ServiceError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class ConfigError(ServiceError):
    """The configuration is unusable; the message names file, key and problem."""

    code = ErrorCode.CONFIG_ERROR


# --- runtime failures ----------------------------------------------------------------------


class LLMError(ServiceError):
    """A model provider call failed after retries (or could not be retried)."""

    code = ErrorCode.LLM_ERROR

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details={"provider": provider, **(details or {})})
        self.provider = provider
        self.retryable = retryable


class LLMRateLimitError(LLMError):
    code = ErrorCode.LLM_RATE_LIMITED


class LLMTimeoutError(LLMError):
    code = ErrorCode.LLM_TIMEOUT


class LLMAuthError(LLMError):
    code = ErrorCode.LLM_AUTH


class PlanInvalidError(ServiceError):
    code = ErrorCode.PLAN_INVALID

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message, details={"problems": problems})
        self.problems = problems


class ToolNotAllowedError(ServiceError):
    code = ErrorCode.TOOL_NOT_ALLOWED


class ToolServerError(ServiceError):
    """A tool server could not be started, died, or a call failed at the transport level."""

    code = ErrorCode.TOOL_SERVER_UNAVAILABLE


class ToolTimeoutError(ServiceError):
    code = ErrorCode.TOOL_TIMEOUT


class LeaseLostError(ServiceError):
    """A write was fenced off: another worker holds the task's lease now."""

    code = ErrorCode.LEASE_LOST
