"""Memory for video (core/train/estimate.py): a clip window whose step cannot fit the device even with every weight
streamed is refused before the first step, naming its frames, size and the settings that would fit; checkpointing,
left off, turns on only where a step cannot run without it."""
from kiln.core.train.estimate import (ActivationTrace, MemoryEstimate, TrainingSettings, checkpointing_needed,
                                     checkpointing_note, clip_fit_error)

MIB = 2 ** 20
# One 33-frame window keeping 3000 MiB for backward; checkpointed, 300 MiB.
TRACE = ActivationTrace(batch=1, saved_bytes=3000 * MIB, outside_units_bytes=100 * MIB, unit_bytes=(150 * MIB,),
                        unit_input_bytes=40 * MIB, largest_bytes=10 * MIB)


def _estimate(budget_mib, checkpointing=False, batch=1):
    return MemoryEstimate(TRACE, 1000, 0, TrainingSettings(batch, checkpointing, 2.0), budget_mib * MIB)


def test_a_window_that_fits_with_streamed_weights_is_not_refused():
    assert clip_fit_error(_estimate(4000), 33, (512, 512)) is None
    assert clip_fit_error(MemoryEstimate(TRACE, 1000, 0, TrainingSettings(1, False, 2.0), None), 33, (8, 8)) is None


def test_a_window_too_large_names_frames_size_and_checkpointing():
    reason = clip_fit_error(_estimate(1000), 33, (512, 320))
    assert "33-frame clip window at 512x320" in reason and "1000 MiB" in reason
    assert reason.index("gradient_checkpointing on") < reason.index("fewer frames")


def test_a_window_too_large_even_checkpointed_suggests_fewer_frames():
    reason = clip_fit_error(_estimate(150, checkpointing=True), 33, (512, 512))
    assert "gradient_checkpointing" not in reason
    assert "target_frames, about 16" in reason and "lower resolution" in reason


def test_checkpointing_turns_on_only_where_a_step_cannot_run_without_it():
    # ~3020 MiB of activations off, ~300 MiB on (TRACE): a 1000 MiB device cannot take the step without it.
    assert checkpointing_needed(_estimate(1000))
    note = checkpointing_note(_estimate(1000), 33, (512, 320))
    assert "33-frame clip window at 512x320" in note and "1000 MiB" in note and "target_frames" in note
    # Runs with it off by streaming weights (the host's partial loading): the setting is kept.
    assert not checkpointing_needed(_estimate(3500))
    # Already on, no device budget known (CPU), or too large even with it: nothing to turn on.
    assert not checkpointing_needed(_estimate(1000, checkpointing=True))
    assert not checkpointing_needed(MemoryEstimate(TRACE, 1000, 0, TrainingSettings(1, False, 2.0), None))
    assert not checkpointing_needed(_estimate(150))
