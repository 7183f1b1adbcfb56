import os
import signal
import time

from interceptor_lib.training.budget import RunBudget


def test_time_budget_requests_a_stop_before_the_margin():
    b = RunBudget(time_budget_s=100, margin_s=10, start=time.time() - 85)
    assert b.should_stop() is None
    b = RunBudget(time_budget_s=100, margin_s=10, start=time.time() - 95)
    assert b.should_stop() == "time budget"
    assert RunBudget(None).should_stop() is None


def test_session_start_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("INTERCEPTOR_SESSION_START", str(time.time() - 3600))
    assert 3590 < RunBudget(7200).elapsed() < 3700


def test_sigterm_becomes_a_stop_request_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with RunBudget(None) as b:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert b.should_stop() == "signal SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
