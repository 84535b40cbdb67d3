"""Planning tools run by hand: the GPU cost estimate of a config."""
