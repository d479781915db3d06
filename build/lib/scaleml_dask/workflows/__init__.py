"""The workflow scripts, shipped inside the package as ``scaleml_dask.workflows`` (package data with their
YAML configs). Each is run as ``python workflows/<name>.py --config workflows/<name>.yaml`` or
``scaleml run <name>``; ``pipeline`` is the demo.
"""
