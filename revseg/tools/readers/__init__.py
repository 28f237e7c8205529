"""Frame-reader backends, one module each; :mod:`revseg.tools.frames` registers them and opens videos."""
