"""The accompaniment model (section III): config, modules, sampling, streaming engine.

Import the submodules directly (``streammuse.model.engine``); nothing is loaded here.
"""
