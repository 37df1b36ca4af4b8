"""Where NMS runs, in one vocabulary for every runtime, the command lines and the build records.

"host": the network returns raw outputs and the shared post-processor (runtimes/postprocess.py) decodes and
runs NMS, with thresholds adjustable per run. "engine": decoding and NMS are appended to the model
(TensorRT's EfficientNMS_TRT, OpenVINO's MulticlassNms), which returns final detections; the metadata then
says ``output_format == "nms"`` (``ModelMetadata.nms_in_model``).
"""

NMS_MODES = ("host", "engine")
NMS_OPS = {"tensorrt": "EfficientNMS_TRT", "openvino": "MulticlassNms"}
