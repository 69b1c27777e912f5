"""A wall-clock run says when its machine could not keep real time."""

from streammuse.experiment.health import assess


def test_on_time_ticks_on_an_idle_machine_kept_real_time():
    health = assess([0.1, 0.2, 0.3] * 100, tau_ms=125.0, load_1m=1.0, cpus=2)
    assert health.kept_real_time and health.reason == "ok"
    assert health.tick_lateness_p99_ms == 0.3


def test_late_ticks_or_an_overloaded_machine_are_named():
    late = assess([0.2] * 98 + [40.0, 60.0], tau_ms=125.0, load_1m=1.0, cpus=2)
    assert not late.kept_real_time and "p99" in late.reason and late.tick_lateness_max_ms == 60.0
    busy = assess([0.2] * 100, tau_ms=125.0, load_1m=14.9, cpus=2)
    assert not busy.kept_real_time and "load average 14.9 on 2 CPUs" in busy.reason


def test_a_server_slower_than_the_pair_is_named_as_the_cause():
    from streammuse.experiment.health import server_limit

    # I = 2 at 120 BPM: a session asks every 250 ms; a server taking 330 ms cannot keep up.
    slow = server_limit([300.0, 320.0, 310.0], [30.0, 40.0, 20.0], interval=2, tau_ms=125.0)
    assert slow is not None and "median 330 ms" in slow and "I x tau = 250 ms" in slow and "doctor" in slow
    assert server_limit([100.0, 120.0], [5.0, 10.0], interval=2, tau_ms=125.0) is None
    assert server_limit([], [], interval=1, tau_ms=125.0) is None


def test_the_load_reason_counts_the_runs_own_processes():
    busy = assess([0.2] * 100, tau_ms=125.0, load_1m=3.8, cpus=2)
    assert "this run's own server and clients included" in busy.reason and "other work" not in busy.reason
