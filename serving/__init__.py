"""The server side of KServe v2 serving: the toolkit's runners inside NVIDIA's Triton Inference Server.

``serving.pytriton_server`` binds a model file's network call (the OpenVINO or ONNX Runtime runner's ``infer``)
into the ``tritonserver`` binary that the ``nvidia-pytriton`` package ships, under the model name, tensor
names and metadata parameter that ``export/triton_repo.py`` writes into a model repository (both take them
from ``runtimes/served_model.py``); a client cannot tell the two apart. It runs in an environment of its
own (``.ci/triton_env.sh``: PyTriton pins numpy < 2).
"""
