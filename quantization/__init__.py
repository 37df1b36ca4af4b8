"""INT8 you can judge, beside the graph building of export/: the Q/DQ ONNX model calibrated on the shared
calibration stream (qdq_onnx), the accuracy gate that keeps the most sensitive layers in float (qdq_gate),
the per-layer error of a Q/DQ model or an OpenVINO INT8 IR (int8_sensitivity, openvino_sensitivity), the
report made of it (int8_report) and the calibration sweep (int8_sweep). The build API (export/build.py)
and apps/calibration_sweep.py use them; docs/int8.md says what they show."""
