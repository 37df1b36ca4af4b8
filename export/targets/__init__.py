"""The build targets, one module each (ONNX, OpenVINO IR, TensorRT engine, Triton repository), and the
steps they share (the ONNX variants, the Q/DQ INT8 model, the accuracy check against FP32).
``export.build.build`` picks one; each takes a ``BuildContext`` and returns a ``BuildResult``."""
