"""The pre-flight's memory arithmetic and advice (core/train/estimate.py), without the host: a trace's kept
bytes priced for checkpointing, batch size and fp8 weights, and the advice naming exactly the settings that
bring the bake within the budget."""
from kiln.core.train.estimate import (ActivationTrace, MemoryEstimate, Preflight, TrainingSettings, activation_bytes,
                                      adapter_bytes)

MIB = 2 ** 20
# A step at batch 2 keeping 400 MiB for backward, 20 MiB of it outside the checkpoint units, the units'
# inputs 40 MiB and the largest unit 60 MiB; the largest kept tensor 10 MiB.
TRACE = ActivationTrace(batch=2, saved_bytes=400 * MIB, outside_units_bytes=20 * MIB,
                        unit_bytes=(60 * MIB, 50 * MIB, 30 * MIB), unit_input_bytes=40 * MIB, largest_bytes=10 * MIB)


def estimate(budget_mib, batch=4, checkpointing=False, bytes_per_weight=2.0):
    # 500 M weights: 1000 MiB in bf16 (close enough: 953.7 MiB), 477 MiB in fp8.
    return MemoryEstimate(TRACE, 500_000_000, adapter_bytes(1_000_000, "adamw"),
                          TrainingSettings(batch, checkpointing, bytes_per_weight),
                          None if budget_mib is None else int(budget_mib * MIB))


def test_activation_bytes_scale_with_batch_and_checkpointing():
    assert activation_bytes(TRACE, 2, False) == 420 * MIB            # kept + 2 transients of the largest
    assert activation_bytes(TRACE, 4, False) == 840 * MIB
    assert activation_bytes(TRACE, 2, True) == (20 + 40 + 60 + 10) * MIB    # one transient inside a unit
    assert activation_bytes(TRACE, 1, True) == 65 * MIB
    est = estimate(None)
    assert est.training_bytes() == 840 * MIB + 16_000_000
    assert est.total_bytes() == 1_000_000_000 + est.training_bytes()
    assert est.fits() and est.fitting_settings() == []


def test_a_forward_peak_above_what_backward_keeps_is_the_activation_bytes():
    """A step whose forward builds wide conditioning (HiDream's batched T5/Llama states) peaks in forward,
    above what it keeps for backward: that peak is what it needs, with and without checkpointing."""
    import dataclasses
    wide = dataclasses.replace(TRACE, forward_peak_bytes=500 * MIB, forward_peak_checkpointed_bytes=200 * MIB)
    assert activation_bytes(wide, 2, False) == 500 * MIB
    assert activation_bytes(wide, 4, False) == 1000 * MIB
    assert activation_bytes(wide, 2, True) == 200 * MIB
    # Below what backward holds, the forward's peak changes nothing.
    narrow = dataclasses.replace(TRACE, forward_peak_bytes=300 * MIB, forward_peak_checkpointed_bytes=100 * MIB)
    assert activation_bytes(narrow, 2, False) == activation_bytes(TRACE, 2, False) == 420 * MIB
    assert activation_bytes(narrow, 2, True) == activation_bytes(TRACE, 2, True)


FP8 = "fp8 base weights (load the model with weight_dtype fp8_e4m3fn)"


def test_advice_names_the_settings_that_fit():
    weights = 1_000_000_000 / MIB          # bf16 weights: 953.7 MiB; fp8: 476.8 MiB; adapters 15.3 MiB
    # Batch 4, no checkpointing: 953.7 + 840 + 15.3 MiB. A budget 300 MiB above the weights fits checkpointing
    # (+260), batch 1 (+210; batch 2 needs +420), or fp8 weights at batch 3 (476.8 + 630); checkpointing
    # with fp8 fits too but contains checkpointing alone, so it is not offered.
    est = estimate(weights + 300)
    assert not est.fits()
    assert est.fitting_settings() == [
        "gradient_checkpointing on",
        "batch_size 1 (gradient accumulation 4 keeps the effective batch)",
        f"{FP8} and batch_size 3 (gradient accumulation 2 keeps the effective batch)"]
    # 777 MiB: only fp8 weights with checkpointing (476.8 + 260 + 15.3), or fp8 at batch 1 (476.8 + 210 + 15.3).
    assert estimate(477 + 280 + 20).fitting_settings() == [
        f"gradient_checkpointing on and {FP8}",
        f"{FP8} and batch_size 1 (gradient accumulation 4 keeps the effective batch)"]
    # Already checkpointing and fp8: only the batch is left to change.
    assert estimate(477 + 70 * 2 + 20, checkpointing=True, bytes_per_weight=1.0).fitting_settings() == [
        "batch_size 2 (gradient accumulation 2 keeps the effective batch)"]
    # Nothing fits: the summary says the host will stream weights.
    hopeless = estimate(100)
    assert hopeless.fitting_settings() == []
    assert "does not fit even with checkpointing, fp8 base weights and batch 1" in hopeless.summary()
    assert "To fit, set gradient_checkpointing on; or batch_size 1" in est.summary()


def test_preflight_advice_uses_the_estimate():
    mem = estimate(1_000_000_000 / MIB + 300)
    pre = Preflight(1.0, 10.0, 1_000_000, 16_000_000, None, None, memory=mem)
    assert not pre.fits()
    assert pre.advice() == mem.fitting_settings() and pre.advice()[0] == "gradient_checkpointing on"
    text = pre.summary(10)
    assert "It will not fit: gradient_checkpointing on" in text
    assert Preflight(1.0, 10.0, 1, 1, None, None, memory=estimate(None)).advice() == []
