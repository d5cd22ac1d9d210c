"""The host side of training: key names, target layers, the model's forward and text encoding through
ComfyUI's own ModelPatcher, model_sampling, extra_conds and CLIP."""
from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass

import torch
import torch.utils.checkpoint

import comfy.lora
import comfy.model_base
import comfy.model_management as mm
import comfy.model_sampling
import comfy.sd

from ..core.lora.names import kohya_name
from ..core.lora.value import KilnLora
from ..core.net.blocks import block_of
from ..core.net.network import TargetLayer
from .families import family_of, timestep_sampling, training_conds

log = logging.getLogger("kiln")


def _weight_module_name(weight_key: str) -> str:
    return weight_key[: -len(".weight")]


def _ldm_kohya_name(weight_key: str) -> str:
    """``diffusion_model.input_blocks.1.1.proj_in.weight`` -> ``lora_unet_input_blocks_1_1_proj_in`` (the LDM-style
    spelling the host's loader accepts beside kohya's diffusers-style one)."""
    return kohya_name("lora_unet_", weight_key[len("diffusion_model."):-len(".weight")])


def kohya_names_for_model(model_patcher=None, clip=None) -> dict[str, str]:
    """kohya module name -> host state-dict weight key, choosing the names kohya's own scripts write
    (diffusers-style UNet names for SD-family models, ``lora_te[12]_`` for the text encoders)."""
    out: dict[str, str] = {}
    if model_patcher is not None:
        key_map = comfy.lora.model_lora_keys_unet(model_patcher.model, {})
        by_weight: dict[str, list[str]] = {}
        for k, w in key_map.items():
            if k.startswith("lora_unet_") and w.endswith(".weight"):
                by_weight.setdefault(w, []).append(k)
        for w, names in by_weight.items():
            ldm = _ldm_kohya_name(w)
            preferred = [n for n in names if n != ldm]
            out[preferred[0] if preferred else ldm] = w
    if clip is not None:
        out.update(text_encoder_names(clip))
    return out


_CLIP_PREFIXES = ("clip_l.", "clip_g.", "clip_h.")


def text_encoder_names(clip) -> dict[str, str]:
    """kohya module name -> text-encoder weight key, for every encoder layer the host's LoraLoader reads by a
    kohya-style name: CLIP as kohya writes it (``lora_te_`` for one CLIP, ``lora_te1_``/``lora_te2_`` for SDXL's
    pair); T5-XXL as ``lora_te1_`` where it is the only encoder (Chroma) -- beside CLIP encoders it stays frozen,
    kohya's default for Flux and SD3; a lone LLM encoder (Qwen2.5-VL, Qwen3, Llama, Gemma: the host's
    ``lora_te_layers_N_...`` names) as the host names it. Encoders the host reads only by their generic
    ``text_encoders.<path>`` name (UMT5) get none (see ``untrainable_text_encoders``)."""
    key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})
    names_of: dict[str, list[str]] = {}
    for k, w in key_map.items():
        if k.startswith("lora_te"):
            names_of.setdefault(w, []).append(k)
    weights = set(names_of)
    clip_weights = {w for w in weights if w.startswith(_CLIP_PREFIXES)}
    two_clips = any(w.startswith("clip_g.") for w in clip_weights) and any(w.startswith("clip_l.") for w in clip_weights)
    out: dict[str, str] = {}
    for w, names in names_of.items():
        if w in clip_weights:
            wanted = ("lora_te1_", "lora_te2_") if two_clips else ("lora_te_",)
            chosen = [n for n in names if n.startswith(wanted)]
        elif w.startswith("t5xxl."):
            chosen = [] if clip_weights else [n for n in names if n.startswith("lora_te1_")]
        else:
            chosen = [n for n in names if n.startswith("lora_te_")]
        if chosen:
            out[sorted(chosen)[0]] = w
    return out


def untrainable_text_encoders(clip) -> list[str]:
    """The text encoders of ``clip`` (their state-dict prefixes) that no kohya-style LoRA name of this host reaches,
    so text-encoder training cannot train them: UMT5 (Wan), and on older hosts the LLM encoders."""
    reached = {w.split(".", 1)[0] for w in text_encoder_names(clip).values()}
    present = {k.split(".", 1)[0] for k in clip.cond_stage_model.state_dict() if k.endswith(".weight")}
    frozen_t5 = {"t5xxl"} if any(p.startswith("clip_") for p in present) else set()
    return sorted(present - reached - frozen_t5)


def check_text_encoder_trainable(clip) -> None:
    """Before any step: refuse text-encoder training where no encoder layer can be saved under a name the host's
    LoraLoader reads back (the run would train the diffusion model only and say nothing), and name the encoders
    that stay frozen beside trained ones."""
    frozen = untrainable_text_encoders(clip)
    if not text_encoder_names(clip):
        raise ValueError(
            f"train_text_encoder is on, but the connected text encoder ({', '.join(frozen) or 'unknown'}) has no LoRA "
            "key names that this ComfyUI's LoraLoader reads back (no trainer writes LoRAs for it), so a trained encoder "
            "could not be loaded: turn train_text_encoder off; the diffusion model trains as usual.")
    if frozen:
        log.warning("Kiln: text-encoder training trains %s; %s stays frozen (kohya's default beside CLIP, or no "
                    "LoRA key names for it in this ComfyUI)", ", ".join(sorted({w.split(".", 1)[0] for w in
                                                                                text_encoder_names(clip).values()})),
                    ", ".join(frozen))


def target_layers(model_patcher=None, clip=None) -> list[TargetLayer]:
    layers = []
    # The family picks the targets table (core.net.families); text-encoder layers keep the CLIP naming.
    family = family_of(model_patcher) if model_patcher is not None else ""
    for kohya, weight_key in kohya_names_for_model(model_patcher, clip).items():
        is_te = kohya.startswith("lora_te")
        root = clip.cond_stage_model if is_te else model_patcher.model
        name = _weight_module_name(weight_key)
        try:
            module = root.get_submodule(name)
        except AttributeError:
            continue
        layer_family = "" if is_te else family
        layers.append(TargetLayer(kohya, name, module, is_te, block_of(name, is_te, layer_family), layer_family))
    return layers


def apply_lora(model, clip, lora: KilnLora, strength_model: float, strength_clip: float):
    """Apply through the host's own loader (what LoraLoader does), so in-graph and file results match."""
    tensors = dict(lora.tensors)
    return comfy.sd.load_lora_for_models(model, clip, tensors, strength_model, strength_clip)


def layer_shapes(model, clip=None) -> dict[str, tuple]:
    """kohya module name -> the model's weight shape, under both UNet spellings (diffusers-style names as kohya
    writes them, and LDM-style ``lora_unet_input_blocks_...`` names), which the host's loader accepts: what a
    LoRA is checked against before it is applied or merged."""
    names = kohya_names_for_model(model, clip)
    sd = dict(model.model.state_dict())
    if clip is not None:
        sd.update(clip.cond_stage_model.state_dict())
    shapes = {}
    for kohya, key in names.items():
        if key in sd:
            shapes[kohya] = tuple(sd[key].shape)
            if key.startswith("diffusion_model."):
                shapes[_ldm_kohya_name(key)] = tuple(sd[key].shape)
    return shapes


def model_kind(model_patcher) -> tuple[str, float]:
    ms = model_patcher.get_model_object("model_sampling")
    sigma_data = float(getattr(ms, "sigma_data", 1.0))
    if isinstance(ms, comfy.model_sampling.CONST):
        return "flow", sigma_data
    if isinstance(ms, comfy.model_sampling.V_PREDICTION):  # EDM subclasses it
        return "v", sigma_data
    if isinstance(ms, comfy.model_sampling.X0):
        return "x0", sigma_data
    return "eps", sigma_data


class HostDiffusionModel:
    """Implements core.train.loop.DiffusionModel on a cloned, loaded ModelPatcher (no weight copy)."""

    def __init__(self, model_patcher, clip, train_text_encoder: bool, memory_required: float = 0.0, load: bool = True):
        self.patcher = model_patcher.clone()
        self.clip = clip
        self.train_text_encoder = train_text_encoder
        self.kind, self.sigma_data = model_kind(self.patcher)
        self.model_sampling = self.patcher.get_model_object("model_sampling")
        self.family = family_of(self.patcher)
        self.family_conds = training_conds(self.family)    # e.g. Flux dev's guidance 1.0, as kohya trains
        self.timestep_sampling = timestep_sampling(self.family)   # what the objective's "auto" means
        # SDXL's adm vector embeds each image's original size, crop and target size (the host's
        # SDXL/SDXLRefiner encode_adm reads width/height, crop_w/crop_h, target_width/target_height).
        self.reads_image_sizes = isinstance(model_patcher.model, (comfy.model_base.SDXL,
                                                                  comfy.model_base.SDXLRefiner))
        # Base weights never train; only adapters carry gradients.
        self.patcher.model.requires_grad_(False)
        if clip is not None:
            clip.cond_stage_model.requires_grad_(False)
        # A bake loads later (host.placement), once it knows the memory training needs.
        if load:
            mm.load_models_gpu([self.patcher], memory_required=memory_required)
        self.device = self.patcher.load_device
        self.base = self.patcher.model
        self.references = None   # an edit run's control latents per batch (host.reference.References)
        # Readers of the residual that need no copy of their input (host.preflight's trace finds them).
        self.unchanged_readers = UnchangedReaders()

    def process_latent_in(self, latents):
        # Families with video latent formats (Qwen-Image, Wan: latent_dimensions 3) read [B, C, T, H, W];
        # an image is one frame.
        if latents.dim() == 4 and getattr(self.base.latent_format, "latent_dimensions", 2) == 3:
            latents = latents.unsqueeze(2)
        return self.base.process_latent_in(latents)

    def percent_to_sigma(self, percent: float) -> float:
        return float(self.model_sampling.percent_to_sigma(percent))

    def noise_scaling(self, sigma, noise, x0):
        return self.model_sampling.noise_scaling(sigma.view(-1, *([1] * (x0.dim() - 1))), noise, x0, max_denoise=False)

    def encode_text(self, captions: list[str]) -> list:
        out = []
        ctx = contextlib.nullcontext() if self.train_text_encoder else torch.no_grad()
        with ctx:
            for text in captions:
                tokens = self.clip.tokenize(text)
                enc = self.clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)
                cond = enc.pop("cond")
                out.append((cond, enc) if self.train_text_encoder else autograd_safe(cond, enc))
        return out

    def _model_kwargs(self, conds, x_t, sizes=None):
        per_sample = []
        for i, (cond, extra) in enumerate(conds):
            params = dict(self.family_conds)
            params.update(extra)
            params.update(cross_attn=cond.to(self.device), device=self.device, noise=x_t[i:i + 1],
                          width=x_t.shape[-1] * 8, height=x_t.shape[-2] * 8, prompt_type="positive")
            if self.references is not None:   # edit pairs: the host's own reference-latent conditioning
                params.update(self.references.for_sample(
                    i, getattr(self.base.latent_format, "latent_dimensions", 2), self.device))
            if sizes:
                s = sizes[i]
                params.update(width=s.original[0], height=s.original[1], crop_w=s.crop[0], crop_h=s.crop[1],
                              target_width=s.target[0], target_height=s.target[1])
            per_sample.append(self.base.extra_conds(**params))
        kwargs = {}
        for key, first in per_sample[0].items():
            others = [s[key] for s in per_sample[1:]]
            value = first.concat(others) if others else first.cond
            # CONDConstant values (e.g. Lumina2's num_tokens) are plain numbers; CONDList values (ref_latents) lists.
            if isinstance(value, list):
                value = [v.to(self.device) if isinstance(v, torch.Tensor) else v for v in value]
            kwargs[key] = value.to(self.device) if isinstance(value, torch.Tensor) else value
        return kwargs

    def predict_x0(self, x_t, sigma, conds, sizes=None):
        kwargs = self._model_kwargs(conds, x_t, sizes)
        training = torch.is_grad_enabled()
        with host_training_flag(training), residuals_grad_safe(self.base.diffusion_model, training,
                                                                self.unchanged_readers):
            out = self.base.apply_model(x_t, sigma, **kwargs)
        if self.references is not None and out.shape != x_t.shape:   # the loss is on the target's tokens only
            raise RuntimeError(f"the model returned {tuple(out.shape)} for a {tuple(x_t.shape)} target with reference "
                               "latents: this host's model does not drop the reference tokens; report it")
        return out


# Blocks that feed the residual stream itself (not a normalised copy) to a submodule and then add into it in place:
# LTX-Video's block hands ``x`` to its cross-attention (``attn2(x, context)``) and then does ``x += ...``.
# block class (module.class) -> the submodules whose first input is the residual.
def autograd_safe(cond: torch.Tensor, extra: dict) -> tuple[torch.Tensor, dict]:
    """A (cond, extras) pair the host encoded, as clones: host-made tensors may be inference tensors, and clones are
    safe to keep in autograd graphs."""
    return cond.clone(), {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in extra.items()}


RESIDUAL_READERS = {"comfy.ldm.lightricks.model.BasicTransformerBlock": ("attn2",)}


@dataclass(frozen=True)
class UnchangedReaders:
    """What a traced training forward showed (host.preflight): the residual readers whose input no later op of the
    forward changed in place, so they need no copy of it, and whether the same held for every call of the host's
    functional RMS norm. The default (nothing known) copies every reader's input."""
    modules: frozenset = frozenset()
    functional: bool = False

    @classmethod
    def everything(cls) -> "UnchangedReaders":
        """No copies at all (a trace that looks for in-place changes runs so)."""
        return cls(_ALL, True)


class _All(frozenset):
    def __contains__(self, item) -> bool:
        return True


_ALL = _All()


def _copy_first_input(module, args):
    return (args[0].clone(),) + tuple(args[1:]) if args and isinstance(args[0], torch.Tensor) else None


def residual_readers(root: torch.nn.Module):
    """The modules whose first input may be the residual stream: normalisation modules (found by class name, since
    each host family brings its own RMSNorm and LayerNorm classes) and the submodules of RESIDUAL_READERS."""
    for module in root.modules():
        if "Norm" in type(module).__name__ and not any(True for _ in module.children()):
            yield module
        for child in RESIDUAL_READERS.get(f"{type(module).__module__}.{type(module).__name__}", ()):
            if isinstance(getattr(module, child, None), torch.nn.Module):
                yield getattr(module, child)


@contextlib.contextmanager
def residuals_grad_safe(root: torch.nn.Module, enabled: bool, unchanged: UnchangedReaders = UnchangedReaders()):
    """Transformer blocks of several families add residuals in place (Flux: ``img += gate * attn``; LTX-Video and
    LTX-2: ``x += attn``, ``x.addcmul_(ff, gate)``) onto the tensor a normalisation saved for backward. Feeding every
    reader of the residual a copy of it keeps the saved tensor intact (one activation-sized copy per read, only while
    training): the ``residual_readers`` and the host's functional RMS norm (``comfy.ldm.common_dit.rms_norm``, which
    the LTX blocks call on the residual). Readers in ``unchanged`` (a traced forward saw their input left alone:
    SD1.5's and SDXL's blocks add out of place) read the tensor itself: on a 256 px SD1.5 step the copies were
    ~90 MiB more resident memory. A model's caches across forwards are dropped too."""
    if not enabled:
        yield
        return
    handles = [m.register_forward_pre_hook(_copy_first_input) for m in residual_readers(root)
               if m not in unchanged.modules]
    try:
        with (contextlib.nullcontext() if unchanged.functional else _functional_norms_copy_input()), \
                _step_caches_dropped(root):
            yield
    finally:
        for h in handles:
            h.remove()


class ReaderWatch:
    """Inside ``watching()``, every residual reader's input and the functional RMS norm's are noted (by weak
    reference) with their version counter; when it ends (the forward's graph still alive) the inputs some op changed
    in place since are found. A noted input that died before was saved by nothing, so no copy of it is needed."""

    def __init__(self, root: torch.nn.Module):
        self.root = root
        self.seen: set = set()               # readers that ran
        self.changed_modules: set = set()    # readers whose input was changed after they read it
        self.functional_changed = False
        self._reads: list = []               # (module or None for the functional norm, weakref to input, version)

    def _note(self, module, args):
        if args and isinstance(args[0], torch.Tensor):
            self._reads.append((module, weakref.ref(args[0]), args[0]._version))

    def _note_functional(self, x):
        self._reads.append((None, weakref.ref(x), x._version))

    @contextlib.contextmanager
    def watching(self):
        handles = [m.register_forward_pre_hook(self._note, prepend=True) for m in residual_readers(self.root)]
        try:
            with _functional_rms_norm_wrapped(self._noting_functional):
                yield self
        finally:
            for h in handles:
                h.remove()
            for module, ref, version in self._reads:
                x = ref()
                changed = x is not None and x._version != version
                if module is None:
                    self.functional_changed |= changed
                else:
                    self.seen.add(module)
                    if changed:
                        self.changed_modules.add(module)
            self._reads = []

    def _noting_functional(self, real):
        def rms_norm(x, *args, **kwargs):
            self._note_functional(x)
            return real(x, *args, **kwargs)
        return rms_norm

    def changed(self) -> bool:
        """Whether some reader's input was changed in place after it was read."""
        return bool(self.changed_modules) or self.functional_changed

    def result(self) -> UnchangedReaders:
        return UnchangedReaders(frozenset(self.seen - self.changed_modules), not self.functional_changed)


@contextlib.contextmanager
def _step_caches_dropped(root: torch.nn.Module):
    """A host model that keeps state between forwards for sampling (HiDream-O1 caches its prompt's key/value
    projections across steps: ``clear_kv_cache``) starts and ends each training forward without it: the cached
    values were made by the weights of an earlier step, with that step's (freed) graph."""
    clear = getattr(root, "clear_kv_cache", None)
    if callable(clear):
        clear()
    try:
        yield
    finally:
        if callable(clear):
            clear()


def _functional_norms_copy_input():
    """The host's functional RMS norm, called as ``comfy.ldm.common_dit.rms_norm(x, ...)``, given a copy of ``x`` for
    the context's duration (the host's own function is restored after)."""
    return _functional_rms_norm_wrapped(lambda real: lambda x, *args, **kwargs: real(
        x.clone() if torch.is_grad_enabled() else x, *args, **kwargs))


@contextlib.contextmanager
def _functional_rms_norm_wrapped(wrap):
    """``comfy.ldm.common_dit.rms_norm`` replaced by ``wrap(the host's function)`` for the context's duration."""
    try:
        import comfy.ldm.common_dit as common_dit
    except ImportError:
        yield
        return
    real = getattr(common_dit, "rms_norm", None)
    if real is None:
        yield
        return
    common_dit.rms_norm = wrap(real)
    try:
        yield
    finally:
        common_dit.rms_norm = real


@contextlib.contextmanager
def host_training_flag(enabled: bool):
    """While Kiln trains: hosts that have ``model_management.in_training`` switch fused inference kernels (the 2026
    host's Flux/Wan RoPE) to their differentiable torch versions when it is set, as the host's own TrainLoraNode
    does; the fused comfy_kitchen kernels some families call whatever the flag says (ERNIE-Image, Cosmos Predict2,
    Anima, JoyImage) resolve to differentiable stand-ins (host.kernels). Older hosts need neither. Gradient
    checkpointing's recomputation enters this again (host.checkpointing)."""
    if not enabled:
        yield
        return
    from .kernels import differentiable_kernels
    previous = getattr(mm, "in_training", None)
    if previous is not None:
        mm.in_training = True
    try:
        with differentiable_kernels():
            yield
    finally:
        if previous is not None:
            mm.in_training = previous


def latent_spatial_ratio(model_patcher, vae=None) -> int:
    """Pixels per latent cell of the MODEL's latent format (8 for most, 16 for FLUX.2 and Wan 2.2). On hosts whose
    latent formats do not say (2025-10), the VAE's own ratio where one is given (Wan 2.2's VAE: 16), else 8."""
    ratio = getattr(model_patcher.get_model_object("latent_format"), "spacial_downscale_ratio", None)
    if ratio is None and vae is not None and hasattr(vae, "spacial_compression_encode"):
        ratio = vae.spacial_compression_encode()
    return int(ratio) if isinstance(ratio, (int, float)) and ratio >= 1 else 8


def vae_temporal_ratio(vae) -> int:
    """Frames per latent frame of a video VAE (4 for Wan's and HunyuanVideo's, 8 for LTX-2's); 0 for an image VAE."""
    if getattr(vae, "latent_dim", 2) != 3:
        return 0
    ratio = vae.temporal_compression_decode() if hasattr(vae, "temporal_compression_decode") else None
    if not ratio:
        try:
            ratio = round(vae.upscale_ratio[0](8192) / 8192)
        except (TypeError, IndexError, AttributeError):
            ratio = 1
    return max(1, int(ratio))


def check_clips(dataset, model_patcher, vae):
    """A dataset with clips, fitted to the video VAE (windows cut to what it encodes whole), or an error before any
    step where the model or VAE reads still images only."""
    if not dataset.has_clips:
        return dataset
    fmt = model_patcher.get_model_object("latent_format")
    temporal = vae_temporal_ratio(vae)
    if getattr(fmt, "latent_dimensions", 2) != 3 or not temporal:
        what = "the model" if getattr(fmt, "latent_dimensions", 2) != 3 else "the VAE"
        raise ValueError(f"the dataset holds video clips, but {what} reads still images only: train clips on a "
                         "video family (Wan, HunyuanVideo, LTX-2) with its own VAE, or remove the clips from the "
                         "dataset folder.")
    return dataset.for_temporal(temporal)


def vae_encoder(vae):
    """(encode fn for core.data.cache.LatentCache, an identity string for its cache key)."""
    sd = vae.first_stage_model.state_dict()
    # Identity from the weights themselves: class, shapes and a few sampled values.
    probe = [str(type(vae.first_stage_model).__name__)]
    for k in sorted(sd)[:: max(1, len(sd) // 8)]:
        t = sd[k].flatten()
        probe.append(f"{k}:{tuple(sd[k].shape)}:{float(t[: 16].float().sum()):.6g}")

    # A video VAE (latent_dim 3: Wan 2.1/2.2, Qwen-Image's, HunyuanVideo's, LTX's) reads a batch of images as one
    # clip and returns one latent for all of them, so each item is encoded on its own there (as the host's own
    # latent nodes feed it one clip at a time); image VAEs take the batch at once.
    per_item = getattr(vae, "latent_dim", 2) == 3

    def encode(pixels):
        """[B, H, W, 3] images, or [B, F, H, W, 3] clip windows (each encoded as one clip)."""
        with torch.no_grad():
            if pixels.dim() == 5:
                out = torch.cat([vae.encode(pixels[i, ..., :3]) for i in range(pixels.shape[0])])
            elif per_item:
                out = torch.cat([vae.encode(pixels[i:i + 1, ..., :3]) for i in range(pixels.shape[0])])
            else:
                out = vae.encode(pixels[..., :3])
            return out.to("cpu", torch.float32).clone()
    import hashlib
    return encode, hashlib.sha256("|".join(probe).encode()).hexdigest()[:16]


@contextlib.contextmanager
def text_encoder_grad_safe(clip, enabled: bool):
    """The host's text encoders add residuals in place (``x += attn(norm(x))``), which would overwrite the
    tensor the norm keeps for backward. Feeding each norm a copy of its input makes the in-place add
    harmless to autograd (a [tokens, width] copy per norm; nothing changes when not training the TE)."""
    if not enabled or clip is None:
        yield
        return
    handles = []
    for module in clip.cond_stage_model.modules():
        # nn.LayerNorm (CLIP) and the encoders' own RMSNorm/T5LayerNorm classes (T5, UMT5, Llama, Qwen, Gemma).
        if isinstance(module, torch.nn.LayerNorm) or ("Norm" in type(module).__name__
                                                     and not any(True for _ in module.children())):
            handles.append(module.register_forward_pre_hook(
                lambda m, args: (args[0].clone(),) + tuple(args[1:]) if torch.is_grad_enabled() else None))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class PatchedWeights:
    """Read-only mapping: state-dict key -> the weight as this ModelPatcher means it (its patches, e.g.
    LoRAs from LoraLoader, applied to the original weight), computed one key at a time on demand.

    Patched weights sit in the shared model only while some clone is loaded, with the originals in the
    clones' shared backup; so start from the backup when there is one, never from a patched tensor."""

    def __init__(self, patcher, root_module, prefix: str = ""):
        self.patcher, self.root, self.prefix = patcher, root_module, prefix
        self.sd = root_module.state_dict()

    def __contains__(self, key):
        return key in self.sd

    def keys(self):
        return self.sd.keys()

    def __getitem__(self, key):
        backup = self.patcher.backup.get(self.prefix + key) if hasattr(self.patcher, "backup") else None
        weight = (backup.weight if backup is not None else self.sd[key]).detach().to("cpu", torch.float32).clone()
        patches = self.patcher.patches.get(self.prefix + key)
        if patches:
            weight = comfy.lora.calculate_weight(patches, weight, self.prefix + key)
        return weight


def patched_weights(model=None, clip=None) -> dict:
    """One mapping over the diffusion model's and the text encoder's weights with their patches."""
    class Both:
        def __init__(self, parts):
            self.parts = parts

        def __contains__(self, key):
            return any(key in p for p in self.parts)

        def __getitem__(self, key):
            for p in self.parts:
                if key in p:
                    return p[key]
            raise KeyError(key)
    parts = []
    if model is not None:
        parts.append(PatchedWeights(model, model.model))
    if clip is not None:
        parts.append(PatchedWeights(clip.patcher, clip.cond_stage_model))
    return Both(parts)
