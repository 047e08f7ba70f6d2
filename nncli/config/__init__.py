"""The experiment file, torch-free: YAML with positions, the spec models, `--set`, lint.

Nothing under this folder imports torch, pandas, matplotlib or scikit-learn (a test checks
it), so `nncli --help`, `validate` and `schema` start fast.
"""
