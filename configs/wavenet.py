"""WaveNet (aigc_jax/families/wavenet/) on speech made offline by eSpeak NG (aigc_jax/data/speech.py).

Variants (`--config=configs/wavenet.py:VARIANT`, several joined by commas):
  vocoder   (default) local conditioning on 80-band log-mel frames (hop 200 samples = 12.5 ms at
            16 kHz, the features of Tacotron 2), upsampled by transposed convolutions (10 x 20).
  speaker   global conditioning on the speaker id only (no mel): a speech-like babbling model.
  unconditional  neither.
  mixture   a discretised mixture of 10 logistics over 16-bit values instead of the 256-way softmax.
  tiny      a few steps of a very small model on a few utterances (tests).
Your data: data.path=DIR (transcript.tsv or LJSpeech's metadata.csv, split by transcript), or
data.text_path=FILE for eSpeak to read your sentences (e.g. ../shared/data/tinyshakespeare.txt).
"""
import ml_collections

from configs import common


def vocoder(config):
    config.model.update(local_conditioning=True, global_conditioning=False)


def speaker(config):
    config.model.update(local_conditioning=False, global_conditioning=True)


def unconditional(config):
    config.model.update(local_conditioning=False, global_conditioning=False)


def mixture(config):
    config.model.output = "logistic_mixture"


def tiny(config):
    config.data.update(num_train=4, num_validation=2, num_test=2, crop_frames=4, hop=16, n_fft=64, n_mels=8)
    config.model.update(cycles=1, max_dilation=8, residual=8, gate=8, skip=8, head=8, cond_channels=8,
                        speaker_dim=4, upsample_strides=(4, 4))
    config.train.update(num_steps=6, batch_size=2, log_every=3, eval_every=3, checkpoint_every=3)
    config.optimizer.update(warmup_steps=1)
    config.eval.update(batch_size=2, sample_seconds=0.005)


def get_config(arg=None):
    config = common.base("wavenet")

    config.data = ml_collections.ConfigDict()
    config.data.path = ""  # a folder of your WAV files (see the module docstring); "" = eSpeak corpus
    config.data.text_path = ""  # eSpeak reads this text file's sentences instead of the docstrings'
    config.data.sample_rate = 16000
    config.data.num_train = 1000  # utterances synthesised for training (about 3 s each)
    config.data.num_validation = 48
    config.data.num_test = 48  # held-out utterances of experiments/wavenet.py's NLL table
    config.data.validation_fraction = 0.1  # for data.path: by transcript
    config.data.test_fraction = 0.1
    config.data.n_fft = 800  # 50 ms window
    config.data.hop = 200  # 12.5 ms
    config.data.n_mels = 80
    config.data.fmin = 50.0
    config.data.fmax = 7600.0  # 0: the Nyquist frequency
    config.data.crop_frames = 8  # training crop: 8 frames = 1,600 samples (0.1 s)
    # Frames read before each crop and not counted in the loss, so that its samples see real history
    # as in generation; -1: enough for the receptive field and the mel upsampler (9 frames here); 0: none
    config.data.history_frames = -1

    config.model = ml_collections.ConfigDict()
    config.model.output = "categorical"  # categorical (256 mu-law classes) | logistic_mixture
    config.model.mixtures = 10
    config.model.cycles = 2  # dilations 1, 2, ..., max_dilation, this many times
    config.model.max_dilation = 256  # 2 x 9 layers: receptive field 1,024 samples (64 ms)
    config.model.residual = 32
    config.model.gate = 32
    config.model.skip = 64
    config.model.head = 64
    config.model.global_conditioning = False
    config.model.local_conditioning = True
    config.model.num_speakers = 8
    config.model.speaker_dim = 16
    config.model.upsample_strides = (10, 20)  # multiply to data.hop
    config.model.cond_channels = 64
    # The log-mels enter as (mel - mel_shift) / mel_scale: the default corpus's log-mels have mean
    # -5.2 and std 2.5 (floor ln 1e-5 = -11.5). Unscaled (0, 1), the upsampler's tanh units saturate.
    config.model.mel_shift = -5.0
    config.model.mel_scale = 2.5

    config.optimizer = common.optimizer(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100)

    config.train.num_steps = 3000
    config.train.batch_size = 8
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000

    config.eval.batch_size = 16
    config.eval.sample_seconds = 0.5  # a WAV sample per evaluation (fast generation); 0: none

    common.apply_variants(config, arg, {"vocoder": vocoder, "speaker": speaker, "unconditional": unconditional,
                                        "mixture": mixture, "tiny": tiny}, "wavenet")
    return config
