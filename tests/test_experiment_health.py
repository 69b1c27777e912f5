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
