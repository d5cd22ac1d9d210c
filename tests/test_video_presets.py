"""The video families' presets and sample settings: LTX-2 as Lightricks' ltx-trainer ships it (lr 1e-4, alpha = rank,
logit-normal on the shifted schedule, guidance 4), HunyuanVideo 1.5 as musubi-tuner documents it (dim 32, lr 1e-4,
shift sampling, guidance 6), both with gradient checkpointing on; a value the user set is kept."""
import pytest

from kiln.core.net.spec import NetworkSpec
from kiln.core.train.family_presets import AUTO, apply_family_preset
from kiln.core.train.family_sampling import for_family
from kiln.core.train.loop import TrainConfig
from kiln.core.train.optim import OptimizerSpec
from kiln.core.train.sample_prompts import SamplePrompt
from kiln.core.train.specs import SampleSpec


@pytest.mark.parametrize("family,sampling,cfg", [("ltx2", "logit_normal", 4.0), ("ltxv", "logit_normal", 4.0),
                                                 ("hunyuan-video-1.5", "uniform", 6.0),
                                                 ("wan", "sigmoid", 5.0)])
def test_video_family_presets_and_sample_settings(family, sampling, cfg):
    net, opt, train, line = apply_family_preset(AUTO, family, NetworkSpec(), OptimizerSpec(lr=3e-5), TrainConfig())
    assert (net.rank, net.alpha, train.objective.timestep_sampling) == (32, 32.0, sampling)
    assert opt.lr == 3e-5 and family in line          # the user's lr is kept
    assert train.gradient_checkpointing and "gradient_checkpointing=True" in line
    spec, guidance, note = for_family(SampleSpec(prompts=(SamplePrompt("a clip"),)), family)
    assert spec.prompts[0].cfg == cfg and guidance is None and family in note
