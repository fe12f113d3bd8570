"""Studies and benchmarks of recgoat_jax, run as modules from the repository root:
`python -m experiments.study <name>` (studies/: specs on recgoat_jax.sweep) and
`python -m experiments.<bench>`; results/ holds what they wrote."""
