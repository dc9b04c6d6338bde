"""The one status-to-error rule every provider client uses."""

import pytest

from longvid.providers._http import (
    AUTH,
    NOT_FOUND,
    RATE_LIMITED,
    REJECTED,
    UNAVAILABLE,
    ProviderHTTPError,
    ProviderRejected,
    error_for_status,
)

RETRY = frozenset({408, 429, 503})


@pytest.mark.parametrize("status, code, retryable, refused", [
    (401, AUTH, False, True), (403, AUTH, False, True), (404, NOT_FOUND, False, True),
    (429, RATE_LIMITED, True, False), (503, UNAVAILABLE, True, False), (500, UNAVAILABLE, False, False),
    (408, UNAVAILABLE, True, False), (400, REJECTED, False, True), (422, REJECTED, False, True),
])
def test_each_status_maps_to_one_error(status, code, retryable, refused):
    error = error_for_status(status, "msg", provider="p", retry_statuses=RETRY, retry_after_s=2.0)
    assert (error.failure_code, error.retryable, error.status, error.provider) == (code, retryable, status, "p")
    assert isinstance(error, ProviderRejected) is refused and isinstance(error, ProviderHTTPError)
    if code in (RATE_LIMITED, UNAVAILABLE):
        assert error.retry_after_s == 2.0


def test_a_provider_may_flag_a_wrong_key_and_add_a_hint():
    wrong_key = error_for_status(400, "API key not valid", provider="veo", retry_statuses=RETRY, auth=True)
    assert wrong_key.failure_code == AUTH and str(wrong_key) == "API key not valid"
    hinted = error_for_status(401, "denied", provider="runway", retry_statuses=RETRY, auth_hint=" (check KEY)")
    assert str(hinted) == "denied (check KEY)"
    assert str(error_for_status(400, "bad", provider="runway", retry_statuses=RETRY, auth_hint=" (check KEY)")) == "bad"
