"""Code generation (Codex, AlphaCode): a sandbox for model-written programs, HumanEval, pass@k."""
