"""The benchmark's report: the Markdown table, CSV, JSON (every raw figure, the environment, the command) and
the plot, published together as one set (runtimes/file_set.py)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional


def environment() -> Dict[str, Any]:
    env: Dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "command": " ".join([sys.executable] + sys.argv)}
    try:
        cpu = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("model name")]
        env["cpu"] = cpu[0] if cpu else platform.processor()
    except OSError:
        env["cpu"] = platform.processor()
    for module in ("numpy", "cv2", "torch", "onnxruntime", "openvino", "nncf", "tensorrt"):
        try:
            env[f"{module}_version"] = __import__(module).__version__
        except ImportError:
            env[f"{module}_version"] = None
    try:
        import subprocess

        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        env["gpu"] = gpu.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["gpu"] = None
    return env


def markdown_table(rows: List[Dict[str, Any]]) -> str:
    base = next((r for r in rows if r["runtime"] == "pytorch" and r["status"] == "ok"), None)
    head = ("| runtime | precision | device | size MB | status | mAP VOC07 | end-to-end p50 / p90 / p99 ms | "
            "pre / infer / post p50 ms | FPS (batch 1) | throughput FPS | peak RSS MB | vs PyTorch | "
            "inference back to back vs benchmark_app, ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        runtime = r["runtime"] + (" (NMS in model)" if r.get("nms") == "engine" else "")
        if r["status"] != "ok":
            lines.append(f"| {runtime} | {r['precision'].upper()} | | | {r['status']} | | | | | | | | |")
            continue
        lat = r["latency_ms"]
        e2e = lat["end_to_end"]
        speedup = f"{base['latency_ms']['end_to_end']['p50'] / e2e['p50']:.2f}x" if base else ""
        tp = f"{r['throughput_fps']:.1f}" if r.get("throughput_fps") else ""
        bapp = ""
        if r.get("benchmark_app_ms"):
            verdict = "within 10%" if r["inference_within_10pct_of_benchmark_app"] else "NOT within 10%"
            bapp = (f"{r['inference_back_to_back_ms']:.2f} / {r['benchmark_app_ms']:.2f} "
                    f"({r['inference_vs_benchmark_app']:.2f}, {verdict})")
        m = f"{100 * r['map_voc07']:.2f}" if r.get("map_voc07") is not None else ""
        lines.append(
            f"| {runtime} | {r['precision'].upper()} | {r['device']} | {r['size_mb']:.1f} | ok | {m} | "
            f"{e2e['p50']:.2f} / {e2e['p90']:.2f} / {e2e['p99']:.2f} | {lat['preprocess']['p50']:.2f} / "
            f"{lat['inference']['p50']:.2f} / {lat['postprocess']['p50']:.2f} | {r['fps']:.1f} | {tp} | "
            f"{r['peak_rss_mb']:.0f} | {speedup} | {bapp} |")
    return "\n".join(lines)


REPORT_STEM = "benchmark"
REPORT_FILES = ("benchmark.md", "benchmark.json", "benchmark.csv", "benchmark.png")  # .png: with matplotlib
_CSV_FIELDS = ["runtime", "precision", "nms", "status", "device", "model", "size_mb", "map_voc07", "iterations",
               "fps", "throughput_fps", "peak_rss_mb", "benchmark_app_ms", "inference_vs_benchmark_app"]
_STAGES = ("preprocess", "inference", "postprocess", "end_to_end")
_STATISTICS = ("p50", "p90", "p99", "mean")


def check_output_folder(output_dir: Path) -> None:
    """UserError (one line) unless the report can be written in ``output_dir``: before the run, not after it."""
    from runtimes.file_set import check_file_set

    check_file_set(output_dir, REPORT_FILES, REPORT_STEM, "--output-dir")


def write_outputs(rows: List[Dict[str, Any]], env: Dict[str, Any], output_dir: Path) -> List[Path]:
    """benchmark.md, .json, .csv and the plot in ``output_dir``, published as one set (runtimes/file_set.py): a
    kill at any moment leaves the previous report or this one, never a table beside another run's figures."""
    from runtimes.file_set import file_set

    with file_set(output_dir, REPORT_FILES, REPORT_STEM, "--output-dir") as staging:
        (staging / "benchmark.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")
        (staging / "benchmark.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1),
                                                encoding="utf-8")
        _write_csv(rows, staging / "benchmark.csv")
        _plot(rows, staging / "benchmark.png")
    return [output_dir / name for name in REPORT_FILES if (output_dir / name).exists()]


def _write_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    import csv

    stage_fields = [f"{s}_{k}_ms" for s in _STAGES for k in _STATISTICS]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS + stage_fields)
        writer.writeheader()
        for r in rows:
            flat = {k: r.get(k) for k in _CSV_FIELDS}
            for s in _STAGES:
                for k in _STATISTICS:
                    flat[f"{s}_{k}_ms"] = r.get("latency_ms", {}).get(s, {}).get(k)
            writer.writerow(flat)


def _plot(rows: List[Dict[str, Any]], path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot (pip install matplotlib)")
        return None
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    labels = [f"{r['runtime']}\n{r['precision'].upper()}" for r in ok]
    left.boxplot([r["raw_end_to_end_ms"] for r in ok], showfliers=False)
    left.set_xticks(range(1, len(ok) + 1), labels, fontsize=8)
    left.set_ylabel("end-to-end latency (ms)")
    left.set_title("latency distribution (whiskers: 1.5 IQR)")
    for r, label in zip(ok, labels):
        if r.get("map_voc07") is not None:
            right.scatter(r["latency_ms"]["end_to_end"]["p50"], 100 * r["map_voc07"])
            right.annotate(label.replace("\n", " "), (r["latency_ms"]["end_to_end"]["p50"], 100 * r["map_voc07"]),
                           fontsize=8, xytext=(4, 4), textcoords="offset points")
    right.set_xlabel("end-to-end latency p50 (ms)")
    right.set_ylabel("mAP VOC07 (%)")
    right.set_title("accuracy against speed")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # into the set's new folder: published with the rest
    plt.close(fig)
    return path
