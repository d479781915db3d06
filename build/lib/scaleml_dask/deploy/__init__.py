"""Deployment: the model registry, compression, batch scoring, ONNX export and the HTTP server.

``registry`` (save / load without pickle), ``outputs`` (the output names every part shares), ``compress``
(quantize / prune with a measured report), ``score`` (batch scoring on the cluster), ``onnx`` (export),
``serve`` and ``monitor`` (the Open Inference Protocol server and its drift monitoring). Submodules are
imported on use, so importing this package costs nothing.
"""
