"""Audio: the jam page's synth voice in numpy and ``streammuse render``."""
