"""One spec per study (realdata, user_text, defaults, ablation, baselines): experiments.study."""
