"""One spec per study (a recgoat_jax.sweep.Study built from the command line's data):
realdata, user_text, defaults, ablation, baselines. Run: python -m experiments.study NAME."""
