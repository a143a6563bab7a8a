"""The human side of the study: the study server (store, assign, app, export, client).

Imports no JAX. See docs/human.md.
"""
