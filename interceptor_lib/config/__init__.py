"""Params: the typed schema (`config.schema`), loading a profile (`config.load.load_params`) and the
checks it runs (`config.validate`)."""
