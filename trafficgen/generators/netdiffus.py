"""`NetDiffusGenerator`: NetDiffus-style class-conditioned diffusion over GASF flow images.

A flow's first ``N = max_packets_`` signed lengths become an ``N x N`` GASF image
(:class:`~trafficgen.representations.gasf.GasfImageMapper`, global learned scale, optionally
through a log map, ``length_transform``); a diffusers
``UNet2DModel`` with a class embedding (``num_class_embeds = n_classes + 1``, the last id is the
*null* class of classifier-free guidance, drawn for a ``cfg_dropout`` fraction of the training
labels) is trained as a denoiser (``DDPMScheduler``, 1000 steps, cosine schedule). Sampling runs
``DDIMScheduler`` (deterministic, ``eta = 0``, ``num_inference_steps`` steps) from seeded
Gaussian noise; with ``guidance_scale != 1`` each step mixes the conditional and the null-class
prediction, ``out_u + w (out_c - out_u)`` (the usual ``eps_u + w (eps_c - eps_u)``: eps, v and x0
are affine in each other at fixed ``x_t``, so the mix is the same whichever the network predicts).
Images go back to flows through the mapper's exact inverse (snap to the training lengths, end
detection).

What makes class conditioning work (measured on the two-class toy set of the tests, tiny U-Net,
300 optimizer steps, 50 DDIM steps, seed 0; the share of samples of the requested class for the
short-payload class, the long one was always right):

* the network predicts ``v = sqrt(a) eps - sqrt(1 - a) x0`` (``prediction_type="v_prediction"``,
  Salimans & Ho 2022) rather than the noise: with the cosine schedule ``a = alpha_bar`` is ~0 near
  ``t = 1000``, where an epsilon model's image estimate ``(x_t - sqrt(1 - a) eps) / sqrt(a)`` is
  its error amplified up to ~1000x, yet those first steps decide the flow's coarse shape and so
  its class (epsilon 76 %, v 100 %);
* the clipped image estimate is used consistently (``use_clipped_model_output=True``): clipping
  ``x0`` to [-1, 1] but keeping the unclipped noise estimate (diffusers' default) feeds the
  clipped-away part back as "noise" at every step; with guidance 2 that pushed the near-(-1)
  images of short-payload flows off their class (14 % with v-prediction, 100 % with the fix);
* DDIM timesteps are spaced ``"trailing"``, so the first step is ``t = 999``, the noise level the
  pure noise it starts from has (``"leading"`` starts at ``1000 - 1000 / steps``; no measurable
  difference on the toy set, kept for correctness at few steps).

``length_transform="log"`` (the default before issue 18) keeps every packet at ``|x| >= 0.5`` and padding at 0; the
linear map of the paper leaves a packet ``2 (|L| / max |L|)^2`` away from padding (``-1``) on the
diagonal. On the toy set the flow end was found for 99-100 % of samples (linear ~30 %); on the
nDPI flows (16 packets, 8 epochs, small preset) the packet-count JSD went from 0.71 to 0.49.

CPU budget (issue 18; numbers in ``benchmarks/results/netdiffus_2026-12-02/``):
``length_transform="quantile"`` gives each training length an interval of the GASF input as
wide as its share of the training packets (:mod:`trafficgen.representations.length_maps`);
``end_detection="step"`` fits the flow end to the whole presence pattern of the diagonal rather
than stopping at its first noisy gap; ``sampler="dpmsolver++"`` / ``"unipc"`` (diffusers'
multistep solvers, x0 clipped to [-1, 1] by their thresholding) need fewer U-Net passes than
DDIM; ``ema_decay`` samples from an exponential moving average of the weights (diffusers'
``EMAModel``); preset ``"fast"`` is a 3-level U-Net without attention at ~0.6M parameters.
Real images plus pixel noise at the samplers' last-step level (sigma 0.169 for 10 steps) decode
with the right packet count for 100 % of the CICDOH20 flows (quantile + step; log + first gap:
78 %) and 59 % of the lengths exact (log: 15 %), hence the defaults ``"quantile"`` and ``"step"``;
the sampler default stays DDIM.
Since 2026-12-04 (``benchmarks/results/netdiffus_2026-12-04/``) the defaults are
``length_transform="class_quantile"`` (one quantile table per class: a class's few dozen lengths
share the whole interval, so the same pixel error moves fewer of them; real nDPI images plus noise
0.042 decode with 62 % of the lengths exact against 37 %) and ``count_condition=True`` (the packet
count drawn from the class's training counts and given to the U-Net, instead of emerging from
near-padding pixels). On the validation split of the training part, at the "fast" preset and 1000
steps: nDPI TSTR 0.431 against 0.235 (quantile, no count), packet-count JSD 0.365 against 0.509;
CICDOH20 0.955 against 0.932, 0.016 against 0.015.
Since 2026-12-04b (``benchmarks/results/netdiffus_2026-12-04b/``) the default length map is
``"class_count_position_quantile"``: one table per class, packet-count bucket and position (a
request size and a response size, or a 1-packet flow's length and a long flow's first, no longer
share one interval of ``v``): real nDPI images plus noise 0.042 keep 90 % of the lengths exact
against 62 % with the class table; validation TSTR at 1000 steps 0.569 against 0.431 (class and
position only: 0.532); the recorded recipe at 2500 steps: nDPI TSTR 0.580 against 0.498.
The seed paper's setting stays reachable: :data:`PAPER_PARAMS`.

Unlike the NetDiffus paper (which fine-tuned an image model on PNG GASFs and lost precision in
the 8-bit images), images stay float and the inverse is exact on real flows.

``UNet2DModel`` needs sizes divisible by ``2^(levels-1)``: images are padded in sequence space
(extra packets at ``x = 0``, i.e. the GASF of the same flow with more padding) to the next
multiple and cropped back before decoding.
"""
from __future__ import annotations

import functools
import math
from typing import ClassVar

import numpy as np

from trafficgen._device import PRECISIONS
from trafficgen._random import check_random_state
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.diffusion_sampling import SAMPLER_LABELS, SAMPLERS, guided_denoise, make_scheduler
from trafficgen.generators.serialization import GASF_MAPPER_SCHEMA, Field
from trafficgen.representations.gasf import (
    END_DETECTIONS,
    GasfImageMapper,
    flow_ends,
    gasf_from_scaled,
    scaled_from_gasf,
)
from trafficgen.representations.length_maps import (
    COUNT_BUCKETS,
    LENGTH_TRANSFORMS,
    PADDING_THRESHOLD,
    compand,
    count_bucket,
    count_position_weights,
    expand,
    position_weights,
    quantile_decode,
    quantile_encode,
)
from trafficgen.representations.length_tables import (
    class_length_tables,
    class_position_counts,
    dense_counts,
    sparse_counts,
)

#: ``UNet2DModel`` keyword arguments per preset. "small" is ~1.8M parameters (attention only at
#: the lowest resolution: full-resolution attention costs ~5x per step on CPU), "tiny" is for tests.
NETDIFFUS_PRESETS: dict[str, dict] = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")),
    "fast": dict(block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3),
    "small": dict(block_out_channels=(32, 64, 96), layers_per_block=1, norm_num_groups=8, attention_head_dim=32,
                  down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
}

#: Training noise schedule (``DDPMScheduler``); sampling uses ``DDIMScheduler`` from the same config.
#: ``prediction_type`` comes from the generator's parameter.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                        clip_sample_range=1.0)

#: What the U-Net may be trained to predict (diffusers' names).
PREDICTION_TYPES = ("v_prediction", "epsilon", "sample")

#: Where decoded lengths snap to: every training length, or the sampled class's.
SNAPS = ("train", "class")

#: The seed paper's configuration (NetDiffus: 10 packets, the plain GASF of ``L / max |L|``,
#: DDIM), for ``NetDiffusGenerator(**PAPER_PARAMS)``.
PAPER_PARAMS = dict(preset="small", max_packets=10, length_transform="linear", end_detection="first_gap",
                    count_condition=False, sampler="ddim", num_inference_steps=50, ema_decay=0.0, epochs=30,
                    learning_rate=1e-3, snap="train")

#: The training budget in optimiser steps when neither ``epochs`` nor ``max_steps`` is given (batches
#: of 64: validation TSTR on the nDPI split 0.569 at 1000 steps, 0.603 at 4000; about 16 minutes of
#: two CPU threads; benchmarks/results/netdiffus_2026-12-04b/validation/).
DEFAULT_MAX_STEPS = 4000


def _seed_from(random_state) -> int:
    """A 31-bit seed drawn from ``random_state`` (an int seeds the draw; None: fresh entropy)."""
    return int(check_random_state(random_state).integers(2**31 - 1))


def padded_size(size: int, levels: int) -> int:
    """Smallest multiple of ``2^(levels-1)`` that is >= ``size``."""
    mult = 2 ** (levels - 1)
    return int(math.ceil(size / mult) * mult)


def _class_rows(labels, classes):
    """(class, row indices) for each of ``classes`` that occurs in ``labels``, in ``classes``' order."""
    names = np.asarray(labels).astype(str)
    for c in classes:
        rows = np.flatnonzero(names == c)
        if len(rows):
            yield c, rows


class NetDiffusGenerator(FlowGenerator):
    """Class-conditioned DDPM over GASF images, sampled by DDIM / DPM-Solver++ / UniPC (registry
    name ``"netdiffus"``).

    Parameters
    ----------
    The defaults are the configuration recorded on a 2-core CPU (``benchmarks/recipes/ntg_netdiffus.yaml``):
    the "fast" U-Net, 4000 optimiser steps, EMA weights, DPM-Solver++ at 10 steps, lengths snapped to
    the sampled class's; :data:`PAPER_PARAMS` is the seed paper's setting.

    preset: ``"fast"`` (default, ~0.6M parameters, no attention), ``"small"`` (~1.8M, attention at
        8x8) or ``"tiny"`` (tests).
    max_packets: image size ``N`` (packets per flow); ``None``: the data's width capped at 32.
    epochs, batch_size, learning_rate: training (AdamW + cosine warmup); ``max_steps``: the budget
        in optimiser steps instead of epochs. With neither ``epochs`` nor ``max_steps``:
        :data:`DEFAULT_MAX_STEPS` steps, whatever the data size.
    num_inference_steps: sampler steps (U-Net passes, doubled by guidance) at sampling time.
    sampler: ``"ddim"`` (deterministic, ``eta = 0``), ``"dpmsolver++"`` (2nd-order multistep,
        data prediction) or ``"unipc"`` (diffusers' schedulers; all clip the image estimate).
    prediction_type: the U-Net's target, ``"v_prediction"`` (default), ``"epsilon"`` or ``"sample"``
        (see the module docstring for why not epsilon).
    length_transform: ``"class_count_position_quantile"`` (default: one quantile table per class,
        packet-count bucket and packet position; the bucket is the sampled count with
        ``count_condition``, else the end the decoder finds), ``"class_position_quantile"`` (per
        class and position), ``"class_quantile"`` (one table per class), ``"quantile"``
        (one table for all classes), ``"log"`` or ``"linear"`` (the plain GASF of
        ``x = L / scale``, ``scale`` the largest training length, as in NetDiffus); see
        :mod:`trafficgen.representations.length_maps`. With one huge length in the data (37,440
        bytes in the shipped nDPI flows, median 176) the linear map puts almost every packet
        within ``1e-4`` of the padding value ``x = 0`` (``G_ii = -1``), below what a denoiser
        resolves; the log and quantile maps keep a gap of 0.5 in ``G_ii`` between padding and the
        smallest packet. All are exactly invertible on the training lengths.
    end_detection: ``"step"`` (default) or ``"first_gap"`` (how the decoder finds the end of a
        flow, see :mod:`trafficgen.representations.gasf`).
    snap: ``"train"`` (decoded lengths snap to the payload lengths of all training flows) or
        ``"class"`` (to those of the training flows of the sampled class: the class-conditional
        support; on the nDPI flows, 1,063 distinct lengths overall, a few dozen per class).
    guidance_scale: classifier-free guidance weight ``w`` (1.0 = plain conditional, one U-Net
        pass per step; > 1 doubles the cost per step).
    cfg_dropout: probability of replacing a training label by the null class.
    ema_decay: decay of the exponential moving average of the weights that sampling uses
        (diffusers ``EMAModel`` with its warm-up, ``1 - (1 + step)^(-2/3)`` capped at this);
        0: the last weights.
    val_fraction: held-out fraction for early stopping (0: none, train on everything).
    count_condition: model each flow's packet count explicitly: the U-Net is conditioned on the
        class and the packet count (:class:`~trafficgen.generators.count_embedding.ClassCountEmbedding`),
        sampling draws each flow's count from its class's training counts and decodes exactly that
        many packets (no end detection; the default). ``False``: the count emerges from the image's
        padding, found by ``end_detection``.
    device: ``"auto"`` (CUDA, else MPS, else CPU) | ``"cpu"`` | ``"cuda[:N]"`` | ``"mps"``. Noise is
        drawn on the CPU from the seeded generator whatever the device, so CPU samples do not
        depend on it; saved weights are CPU tensors and a loaded model moves to ``device`` when
        first used.
    sample_precision: ``"fp32"`` (default) | ``"bf16"`` | ``"fp16"``: the autocast precision of the
        U-Net's passes while sampling (the solver's update stays in fp32). bf16 needs a CPU with
        AVX512-BF16 or AMX, or a CUDA device with bf16; fp16 a CUDA device
        (:func:`trafficgen._device.resolve_precision` says which, in one line).
    noise_scale: standard deviation of the initial noise while sampling (a temperature, as the
        token models' and the CVAE's: below 1 the samples sit nearer their class's typical images;
        1, the default, is the model's own distribution).
    random_state: seed of the initialisation, shuffling, noise and timesteps.
    progress: show a progress bar while training.

    Fitted attributes: ``classes_``, ``class_prior_``, ``mapper_`` (:class:`GasfImageMapper`),
    ``max_packets_``, ``image_size_`` (padded), ``model_`` (``UNet2DModel``), ``history_``.
    """

    name: ClassVar[str] = "netdiffus"
    presets: ClassVar[dict[str, dict]] = NETDIFFUS_PRESETS
    _config_schema: ClassVar[dict[str, Field]] = {
        "classes_": Field.class_names(), "class_prior_": Field.class_prior("classes_"),
        "max_packets_": Field.integer(minimum=1), "image_size_": Field.integer(minimum=1),
        "unet_config": Field.object(), "history_": Field.object(required=False),
        "class_lengths_": Field.object(required=False), "class_counts_": Field.object(required=False),
        "class_packet_counts_": Field.object(required=False), "class_position_counts_": Field.object(required=False),
        "class_count_position_counts_": Field.object(required=False),
    }
    _extra_schemas: ClassVar[dict[str, dict[str, Field]]] = {"gasf.json": GASF_MAPPER_SCHEMA}

    def __init__(self, *, preset: str = "fast", max_packets: int | None = None, epochs: int | None = None,
                 batch_size: int = 64, learning_rate: float = 2e-3, max_steps: int | None = None,
                 num_inference_steps: int = 10, sampler: str = "dpmsolver++", prediction_type: str = "v_prediction",
                 length_transform: str = "class_count_position_quantile", end_detection: str = "step", guidance_scale: float = 1.0,
                 snap: str = "class", cfg_dropout: float = 0.1, ema_decay: float = 0.999, val_fraction: float = 0.0,
                 count_condition: bool = True, device: str = "auto", sample_precision: str = "fp32",
                 noise_scale: float = 1.0, random_state: int | None = None, progress: bool = True):
        self.preset = preset
        self.max_packets = max_packets
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_steps = max_steps
        self.num_inference_steps = num_inference_steps
        self.sampler = sampler
        self.prediction_type = prediction_type
        self.length_transform = length_transform
        self.end_detection = end_detection
        self.snap = snap
        self.guidance_scale = guidance_scale
        self.cfg_dropout = cfg_dropout
        self.ema_decay = ema_decay
        self.val_fraction = val_fraction
        self.count_condition = count_condition
        self.device = device
        self.sample_precision = sample_precision
        self.noise_scale = noise_scale
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ model
    @staticmethod
    def build_unet(preset: str, image_size: int, n_classes: int):
        """A fresh ``UNet2DModel`` (1 channel in/out, ``n_classes + 1`` class embeddings)."""
        from diffusers import UNet2DModel

        if preset not in NETDIFFUS_PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(NETDIFFUS_PRESETS)}")
        return UNet2DModel(sample_size=image_size, in_channels=1, out_channels=1,
                           num_class_embeds=n_classes + 1, **NETDIFFUS_PRESETS[preset])

    def _scheduler_config(self) -> dict:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        return dict(SCHEDULER_CONFIG, prediction_type=self.prediction_type)

    def make_sampler(self, sampler: str | None = None):
        """A fresh diffusers scheduler of ``sampler`` (default: the generator's) over the training
        noise schedule (:func:`~trafficgen.generators.diffusion_sampling.make_scheduler`)."""
        return make_scheduler(self.sampler if sampler is None else sampler, self._scheduler_config())

    def _check_params(self):
        self._scheduler_config()  # validates prediction_type
        if self.length_transform not in LENGTH_TRANSFORMS:
            raise ConfigError(f"length_transform must be one of {LENGTH_TRANSFORMS}, got {self.length_transform!r}")
        if self.end_detection not in END_DETECTIONS:
            raise ConfigError(f"end_detection must be one of {END_DETECTIONS}, got {self.end_detection!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.snap not in SNAPS:
            raise ConfigError(f"snap must be one of {SNAPS}, got {self.snap!r}")
        if self.sample_precision not in PRECISIONS:
            raise ConfigError(f"sample_precision must be one of {PRECISIONS}, got {self.sample_precision!r}")
        if not float(self.noise_scale) > 0.0:
            raise ConfigError(f"noise_scale must be > 0, got {self.noise_scale}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= float(self.cfg_dropout) < 1.0:
            raise ConfigError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")

    def _placed(self):
        """The torch device of ``device``, with the model moved there first if it is elsewhere
        (a loaded model waits on the CPU until it is used)."""
        from trafficgen.generators.training import place_modules

        return place_modules(self.device, self.model_)

    # ------------------------------------------------------------------ images
    def encode_lengths(self, x: np.ndarray, labels=None, n_packets=None) -> np.ndarray:
        """``x = L / scale`` (n, P) -> GASF inputs ``v`` (n, P) through ``length_transform``
        (the class maps need each row's class in ``labels``, ``"class_count_position_quantile"``
        its packet count in ``n_packets`` as well)."""
        m = self.mapper_
        if self.length_transform == "log":
            return compand(x, m.scale_)
        if self.length_transform == "quantile":
            return quantile_encode(x, m.scale_, *self._length_table())
        if self.length_transform.startswith("class_"):
            return self._per_class(quantile_encode, x, labels, n_packets)
        return np.asarray(x, dtype=np.float64)

    def decode_lengths(self, v: np.ndarray, labels=None, n_packets=None) -> np.ndarray:
        """GASF inputs ``v`` (n, k) -> ``x = L / scale`` (n, k), the inverse of :meth:`encode_lengths`."""
        m = self.mapper_
        if self.length_transform == "log":
            return expand(v, m.scale_)
        if self.length_transform == "quantile":
            return quantile_decode(v, m.scale_, *self._length_table())
        if self.length_transform.startswith("class_"):
            return self._per_class(quantile_decode, v, labels, n_packets)
        return np.asarray(v, dtype=np.float64)

    def _length_table(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.mapper_
        if m.valid_lengths_ is None or m.length_counts_ is None:
            raise ConfigError('length_transform="quantile" needs a mapper fitted on flows (length counts)')
        return m.valid_lengths_, m.length_counts_

    def _per_class(self, fn, values: np.ndarray, labels, n_packets=None) -> np.ndarray:
        """``fn(values[rows], scale, table_c, counts_c)`` for each class's rows (the
        ``"class_quantile"`` map; a row of a class without packets in training is padding); with
        ``"class_position_quantile"`` each position's column through that position's weights, with
        ``"class_count_position_quantile"`` through its packet-count bucket's."""
        transform = self.length_transform
        if labels is None:
            raise ConfigError(f'length_transform="{transform}" needs the class of every flow (labels)')
        by_count = transform == "class_count_position_quantile"
        if by_count and n_packets is None:
            raise ConfigError(f'length_transform="{transform}" needs the packet count of every flow')
        values = np.asarray(values, dtype=np.float64)  # (n, k)
        bucket = count_bucket(np.maximum(np.asarray(n_packets), 1)) if by_count else np.zeros(len(values), int)  # (n,)
        out = np.zeros(values.shape, dtype=np.float64)
        for c, rows in _class_rows(labels, self.class_lengths_):
            table = np.asarray(self.class_lengths_[c])
            if not len(table):
                continue
            if transform == "class_quantile":
                out[rows] = fn(values[rows], self.mapper_.scale_, table, np.asarray(self.class_counts_[c]))
                continue
            weights = position_weights(self.class_position_counts_[c], self.class_counts_[c])[None]  # (1, W, K)
            if by_count:
                weights = count_position_weights(self.class_count_position_counts_[c], weights[0])  # (B, W, K)
            for b in np.unique(bucket[rows]):
                sub = rows[bucket[rows] == b]
                for p in range(values.shape[1]):  # positions past max_packets_ (image padding) use the last table
                    out[sub, p] = fn(values[sub, p], self.mapper_.scale_, table, weights[b, min(p, weights.shape[1] - 1)])
        return out

    def _images(self, flows, *, dtype=np.float32) -> np.ndarray:
        """Padded GASF images (n, 1, P, P) of ``flows`` (float32 for training)."""
        x = self.mapper_.scale_flows(flows, self.image_size_)  # (n, P) L / scale
        return gasf_from_scaled(self.encode_lengths(x, flows.labels, flows.n_packets))[:, None].astype(dtype)  # (n, 1, P, P)

    def decode_images(self, images: np.ndarray, labels=None, *, end_detection: str | None = None,
                      snap: str | None = None, packet_counts: np.ndarray | None = None) -> FlowSet:
        """Flows from (padded) images (n, 1, P, P): the mapper's inverse (signs from the rank-one
        structure, lengths through ``length_transform``, snap to the training lengths or, with
        ``snap="class"`` and ``labels``, to each flow's class's, end of flow by ``end_detection``;
        both default to the generator's). ``packet_counts`` (n,), the counts the images were
        generated for (``count_condition``), replaces the end detection: that many packets."""
        self._check_fitted()
        k = self.max_packets_
        v = scaled_from_gasf(np.asarray(images)[:, :, :k, :k])  # (n, k)
        if packet_counts is not None:
            packet_counts = np.clip(np.asarray(packet_counts, dtype=np.int32), 1, k)  # (n,)
            inside = np.arange(k)[None, :] < packet_counts[:, None]  # (n, k)
            if self.length_transform != "linear":  # a position inside the flow is a packet: |v| >= 0.5
                v = np.where(inside, np.where(v < 0, -1.0, 1.0) * np.maximum(np.abs(v), 0.5), 0.0)
        end = end_detection or self.end_detection
        table_counts = packet_counts
        if table_counts is None and self.length_transform == "class_count_position_quantile":
            # no count given (count_condition off): the tables' bucket is the end the decoder finds below
            # (it depends only on which |v| reach the padding threshold, not on the tables)
            table_counts = np.maximum(flow_ends(np.abs(v) >= PADDING_THRESHOLD, end), 1)  # (n,)
        x = self.decode_lengths(v, labels, table_counts)  # (n, k) L / scale
        lengths, n_packets = self.mapper_.lengths_from_scaled(x, samples=True, end=end, n_packets=packet_counts)
        if (snap or self.snap) == "class" and labels is not None and getattr(self, "class_lengths_", None):
            for c, rows in _class_rows(labels, self.class_lengths_):
                lengths[rows], n_packets[rows] = self.mapper_.lengths_from_scaled(
                    x[rows], samples=True, end=end, table=np.asarray(self.class_lengths_[c]),
                    n_packets=None if packet_counts is None else packet_counts[rows])
        return FlowSet(lengths=lengths, n_packets=n_packets, labels=labels)

    # ------------------------------------------------------------------ fit
    def fit(self, flows):
        """Train on a labelled FlowSet; returns ``self``."""
        import torch
        import torch.nn.functional as F
        from diffusers import DDPMScheduler

        from trafficgen._device import resolve_device
        from trafficgen.generators.training import seeded_init, train_loop

        width = self._validated_width(flows)
        self._check_params()
        device = resolve_device(self.device)
        flows = flows.truncate(width)
        counts = flows.class_counts()
        classes = sorted(counts)
        self.mapper_ = GasfImageMapper(image_size=width).fit(flows)
        self.class_lengths_, self.class_counts_ = class_length_tables(flows, classes)
        by_position = self.length_transform in ("class_position_quantile", "class_count_position_quantile")
        self.class_position_counts_ = class_position_counts(flows, self.class_lengths_, width) if by_position else None
        self.class_count_position_counts_ = (class_position_counts(flows, self.class_lengths_, width, by_count=True)
                                             if self.length_transform == "class_count_position_quantile" else None)
        self.max_packets_ = width
        self.image_size_ = padded_size(width, len(self.presets[self.preset]["block_out_channels"]))

        images = torch.from_numpy(self._images(flows))  # (n, 1, P, P)
        index = {c: i for i, c in enumerate(classes)}
        class_ids = np.array([index[c] for c in flows.labels], dtype=np.int64)  # (n,)
        self.class_packet_counts_ = {c: np.bincount(flows.n_packets[class_ids == i], minlength=width + 1)[1:]
                                     .astype(int).tolist() for i, c in enumerate(classes)}
        seed = _seed_from(self.random_state)
        gen = torch.Generator().manual_seed(seed)  # CPU draws: the same on every device
        model = seeded_init(seed, lambda: self._with_condition(
            self.build_unet(self.preset, self.image_size_, len(classes)), len(classes), width)).to(device)
        labels = torch.as_tensor(self._condition_ids(model, class_ids, flows.n_packets))  # (n,)
        null = self._null_id(model, len(classes))
        noise_sched = DDPMScheduler(**self._scheduler_config())
        n_train = noise_sched.config.num_train_timesteps
        p_drop = float(self.cfg_dropout)
        target_of = {"epsilon": lambda x0, noise, t: noise,
                     "v_prediction": noise_sched.get_velocity,
                     "sample": lambda x0, noise, t: x0}[self.prediction_type]

        def loss_fn(batch):
            x0 = images[batch]  # (B, 1, P, P)
            noise = torch.randn(x0.shape, generator=gen)  # (B, 1, P, P)
            t = torch.randint(0, n_train, (len(batch),), generator=gen)  # (B,)
            y = labels[batch]  # (B,)
            if p_drop > 0:
                y = torch.where(torch.rand(len(batch), generator=gen) < p_drop, torch.full_like(y, null), y)
            x0, noise, t, y = x0.to(device), noise.to(device), t.to(device), y.to(device)
            pred = model(noise_sched.add_noise(x0, noise, t), t, class_labels=y).sample  # (B, 1, P, P)
            return F.mse_loss(pred, target_of(x0, noise, t)), len(batch)

        ema = None
        if float(self.ema_decay) > 0:
            from diffusers.training_utils import EMAModel

            ema = EMAModel(model.parameters(), decay=float(self.ema_decay), use_ema_warmup=True)

        max_steps = self.max_steps if self.max_steps is not None or self.epochs is not None else DEFAULT_MAX_STEPS
        self.history_ = train_loop(model, loss_fn, n=len(flows), epochs=int(self.epochs or 1),
                                   batch_size=int(self.batch_size), learning_rate=float(self.learning_rate),
                                   generator=gen, val_fraction=float(self.val_fraction),
                                   patience=5 if self.val_fraction else None, progress=bool(self.progress),
                                   description=f"train {self.name}", restore_best=ema is None,
                                   max_steps=None if max_steps is None else int(max_steps),
                                   after_step=None if ema is None else lambda pos, n: ema.step(model.parameters()))
        if ema is not None:
            ema.copy_to(model.parameters())
        self.model_ = model.eval()
        self.classes_ = classes
        total = sum(counts.values())
        self.class_prior_ = np.array([counts[c] / total for c in classes])
        return self

    # ------------------------------------------------------------------ conditions
    def _with_condition(self, unet, n_classes: int, width: int):
        """``unet`` with the (class, packet count) embedding in its class slot when
        ``count_condition`` (its config still lists ``n_classes + 1`` class embeddings)."""
        if self.count_condition:
            from trafficgen.generators.count_embedding import ClassCountEmbedding

            unet.class_embedding = ClassCountEmbedding(n_classes, width, unet.class_embedding.embedding_dim)
        return unet

    @staticmethod
    def _null_id(model, n_classes: int) -> int:
        return getattr(model.class_embedding, "null_id", n_classes)

    @staticmethod
    def _condition_ids(model, class_ids, packet_counts) -> np.ndarray:
        """(n,) U-Net condition ids: the class ids, or (class, count) pair ids with the count condition."""
        emb = model.class_embedding
        if hasattr(emb, "ids"):
            return emb.ids(class_ids, np.maximum(np.asarray(packet_counts), 1)).numpy()
        return np.asarray(class_ids, dtype=np.int64)

    def draw_conditions(self, names, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """(U-Net condition ids (n,), packet counts (n,) or None) for flows of classes ``names``:
        with ``count_condition`` each count is drawn from its class's training counts."""
        self._check_fitted()
        index = {c: i for i, c in enumerate(self.classes_)}
        class_ids = np.array([index[c] for c in names], dtype=np.int64)
        if not self.count_condition:
            return class_ids, None
        counts = np.zeros(len(class_ids), dtype=np.int32)
        for c, rows in _class_rows(names, self.classes_):
            p = np.asarray(self.class_packet_counts_[c], dtype=np.float64)
            counts[rows] = 1 + rng.choice(len(p), size=len(rows), p=p / p.sum())
        return self._condition_ids(self.model_, class_ids, counts), counts

    # ------------------------------------------------------------------ sample
    def sample_images(self, labels: np.ndarray, *, random_state=None, num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, sampler: str | None = None, batch_size: int = 250,
                      precision: str | None = None, noise_scale: float | None = None,
                      progress: bool = False) -> np.ndarray:
        """Denoised padded images (n, 1, P, P) float32 for U-Net condition ids ``labels`` (n,): class
        ids, or with ``count_condition`` the ids of :meth:`draw_conditions`.

        All initial noise is drawn up front on the CPU from one seeded generator, so ``batch_size``
        changes only the float summation order (same seed and batch size -> same bits) and the
        device does not change the noise. ``precision``: the U-Net's autocast precision (default
        ``sample_precision``); ``noise_scale``: the initial noise's standard deviation (default the
        parameter of that name).
        """
        import torch

        from trafficgen._device import autocast, resolve_precision
        from trafficgen.generators.training import progress_bar

        self._check_fitted()
        steps = int(num_inference_steps or self.num_inference_steps)
        w = float(self.guidance_scale if guidance_scale is None else guidance_scale)
        name = self.sampler if sampler is None else sampler
        scale = float(self.noise_scale if noise_scale is None else noise_scale)
        if steps < 1 or not scale > 0.0:
            raise ConfigError(f"need num_inference_steps >= 1 and noise_scale > 0, got {steps}, {scale}")
        sched = self.make_sampler(name)
        device = self._placed()
        precision = self.sample_precision if precision is None else precision
        resolve_precision(precision, device, option="sample_precision")  # one clear error line before any work
        forward_context = functools.partial(autocast, device, precision)
        gen = torch.Generator().manual_seed(_seed_from(random_state))
        n, p = len(labels), self.image_size_
        noise = torch.randn((n, 1, p, p), generator=gen) * scale  # (n, 1, P, P); x 1.0 is exact
        y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)  # (n,)
        null = self._null_id(self.model_, len(self.classes_))
        out = torch.empty_like(noise)
        n_batches = -(-n // batch_size)
        with torch.inference_mode(), progress_bar(
                n_batches * steps, f"sample {self.name} ({n} flows, {n_batches} batches x {steps} "
                f"{SAMPLER_LABELS[name]} steps)", enabled=progress, show_loss=False) as update:
            for lo in range(0, n, batch_size):
                x = guided_denoise(self.model_, sched, noise[lo:lo + batch_size].to(device),
                                   y_all[lo:lo + batch_size].to(device), steps=steps, guidance_scale=w,
                                   null_label=null, on_step=lambda: update(1),
                                   forward_context=forward_context)  # (B, 1, P, P)
                out[lo:lo + batch_size] = x.cpu()
        return out.numpy()

    def sample(self, n: int, *, cls=None, random_state=None, num_inference_steps: int | None = None,
               guidance_scale: float | None = None, dtype: str | None = None, progress: bool = False):
        """``n`` flows (a labelled FlowSet of width ``max_packets_``); same seed -> same flows.
        ``dtype``: ``"float32"`` | ``"bfloat16"``, the U-Net's precision while sampling (as the token
        models' ``dtype``; default ``sample_precision``). ``progress``: show the denoising steps (the
        samples do not depend on it)."""
        self._check_fitted()
        precision = None
        if dtype is not None:  # the token models' names, checked by their helper
            import torch

            from trafficgen.generators.token_sampling import decode_dtype

            precision = {torch.float32: "fp32", torch.bfloat16: "bf16"}[decode_dtype(dtype)]
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        ids, counts = self.draw_conditions(names, rng)
        images = self.sample_images(ids, random_state=rng, num_inference_steps=num_inference_steps,
                                    guidance_scale=guidance_scale, precision=precision, progress=progress)
        return self.decode_images(images, labels=names, packet_counts=counts)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"classes_": list(self.classes_), "class_prior_": self.class_prior_.tolist(),
                  "max_packets_": self.max_packets_, "image_size_": self.image_size_,
                  "unet_config": {k: v for k, v in dict(self.model_.config).items() if not k.startswith("_")},
                  "history_": self.history_, "class_lengths_": self.class_lengths_,
                  "class_counts_": self.class_counts_, "class_packet_counts_": self.class_packet_counts_}
        # the position tables, sparse; the per-bucket ones sum to the per-position ones (kept only once)
        key = {"class_position_quantile": "class_position_counts_",
               "class_count_position_quantile": "class_count_position_counts_"}.get(self.length_transform)
        if key is not None:
            config[key] = {c: sparse_counts(counts) for c, counts in getattr(self, key).items()}
        tensors = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}  # device-independent
        return config, tensors, {"gasf.json": self.mapper_.to_dict()}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        from diffusers import UNet2DModel

        from trafficgen.generators.serialization import CONFIG_FILE, TENSORS_FILE, load_module_state

        # models saved before these parameters existed: epsilon, linear, first_gap, DDIM
        gen = cls._from_params({"params": {"prediction_type": "epsilon", "length_transform": "linear",
                                           "end_detection": "first_gap", "sampler": "ddim", "count_condition": False,
                                           **config["params"]}})
        gen._check_params()
        n_embeds = config["unet_config"].get("num_class_embeds")
        if n_embeds != len(config["classes_"]) + 1:
            raise InputFormatError(f"unet_config num_class_embeds {n_embeds!r} does not fit "
                                   f"{len(config['classes_'])} classes (expected classes + 1)", path=CONFIG_FILE)
        if config["max_packets_"] > config["image_size_"]:
            raise InputFormatError(f"max_packets_ {config['max_packets_']} exceeds image_size_ "
                                   f"{config['image_size_']}", path=CONFIG_FILE)
        gen.class_packet_counts_ = config.get("class_packet_counts_") or {}  # absent in models saved before it
        if gen.count_condition and not (set(gen.class_packet_counts_) == set(config["classes_"]) and all(
                len(v) == config["max_packets_"] and sum(v) > 0 for v in gen.class_packet_counts_.values())):
            raise InputFormatError("count_condition needs class_packet_counts_ (max_packets_ counts, not all 0) "
                                   "for every class", path=CONFIG_FILE)
        gen.model_ = gen._with_condition(UNet2DModel.from_config(config["unet_config"]), len(config["classes_"]),
                                         int(config["max_packets_"]))
        load_module_state(gen.model_, tensors, TENSORS_FILE)
        gen.model_.eval()  # CPU weights; moved to gen.device when first used (_placed)
        gen.mapper_ = GasfImageMapper.from_dict(extra["gasf.json"])
        if gen.mapper_.image_size != config["max_packets_"]:
            raise InputFormatError(f"image_size {gen.mapper_.image_size} differs from config.json max_packets_ "
                                   f"{config['max_packets_']}", path="gasf.json")
        if gen.length_transform == "quantile" and gen.mapper_.length_counts_ is None:
            raise InputFormatError('length_transform "quantile" needs length_counts_', path="gasf.json")
        gen.classes_ = list(config["classes_"])
        gen.class_prior_ = np.asarray(config["class_prior_"], dtype=float)
        gen.max_packets_ = int(config["max_packets_"])
        gen.image_size_ = int(config["image_size_"])
        gen.history_ = config.get("history_", {})
        gen.class_lengths_ = config.get("class_lengths_") or {}  # absent in models saved before it existed
        gen.class_counts_ = config.get("class_counts_") or {}  # absent in models saved before it existed
        if gen.snap == "class" and set(gen.class_lengths_) != set(gen.classes_):
            raise InputFormatError('snap "class" needs class_lengths_ for every class', path=CONFIG_FILE)
        if gen.length_transform.startswith("class_") and not (
                set(gen.class_counts_) == set(gen.class_lengths_) == set(gen.classes_)
                and all(len(gen.class_counts_[c]) == len(gen.class_lengths_[c]) for c in gen.classes_)):
            raise InputFormatError(f'length_transform "{gen.length_transform}" needs class_lengths_ and '
                                   'class_counts_ of equal length for every class', path=CONFIG_FILE)
        gen.class_position_counts_ = gen.class_count_position_counts_ = None
        key, lead = {"class_position_quantile": ("class_position_counts_", ()),
                     "class_count_position_quantile": ("class_count_position_counts_", (len(COUNT_BUCKETS),))
                     }.get(gen.length_transform, (None, ()))
        if key is not None:
            saved = config.get(key)
            tables = {c: dense_counts(saved[c], (*lead, gen.max_packets_, len(gen.class_lengths_[c])))
                      for c in gen.classes_} if isinstance(saved, dict) and set(saved) == set(gen.classes_) else {}
            if not tables or any(t is None for t in tables.values()):
                raise InputFormatError(f'length_transform "{gen.length_transform}" needs {key} (sparse [{"bucket, " if lead else ""}'
                                       'position, length index, count] rows inside max_packets_ x the class lengths) '
                                       'for every class', path=CONFIG_FILE)
            setattr(gen, key, tables)
            if lead:
                gen.class_position_counts_ = {c: t.sum(axis=0) for c, t in tables.items()}
        return gen
