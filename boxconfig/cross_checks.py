"""What a schema cannot say: names safe for URLs and file names, each stream's name its own, the model a
stream names among the models, a stream's score threshold not below its model's (the detector drops those
detections first). Each check reads only what it needs, so a file with schema errors is checked here too and
every problem is reported at once."""

from __future__ import annotations

from typing import Any, Dict, List

from boxconfig.problems import did_you_mean, line
from boxconfig.schema import NAME_RULE
from runtimes.data_path import KeyPath, describe
from runtimes.errors import UserError
from streams.config import NAME_PATTERN


def cross_problems(data: Any, label: str) -> List[str]:
    if not isinstance(data, dict):
        return []
    top = KeyPath(label)
    models: Dict[str, Any] = data["models"] if isinstance(data.get("models"), dict) else {}
    streams: List[Any] = data["streams"] if isinstance(data.get("streams"), list) else []
    problems = [line(top.key("models").key(name), f"a model's name: {NAME_RULE}")
                for name in models if not NAME_PATTERN.fullmatch(str(name))]
    first_of: Dict[str, int] = {}
    for index, stream in enumerate(streams):
        if not isinstance(stream, dict):
            continue
        at = top.key("streams").index(index)
        name = stream.get("name")
        if isinstance(name, str) and name in first_of:
            problems.append(line(at.key("name"), f"{describe(name)} is the name of streams[{first_of[name]}] too; "
                                                 "every stream needs its own name"))
        elif isinstance(name, str):
            first_of[name] = index
        problems += _model_problems(stream, models, at)
    return problems + _address_problems(data, top)


def _address_problems(data: Dict[str, Any], top: KeyPath) -> List[str]:
    """The webhook's URL, the MQTT broker's address and the RTSP output's, by the code that checks the flags."""
    from analytics.sinks import parse_mqtt_address
    from analytics.webhook import check_webhook_url
    from webview.cli import parse_rtsp_out

    sinks, webview = _mapping(data.get("sinks")), _mapping(data.get("webview"))
    mqtt = _mapping(sinks.get("mqtt"))
    problems = []
    for at, value, check in ((top.key("sinks").key("webhook"), sinks.get("webhook"), check_webhook_url),
                             (top.key("sinks").key("mqtt").key("broker"), mqtt.get("broker"), parse_mqtt_address),
                             (top.key("webview").key("rtsp_out"), webview.get("rtsp_out"), parse_rtsp_out)):
        if isinstance(value, str):
            try:
                check(value)
            except UserError as exc:  # "--webhook URL: problem": the key path says where instead
                text = str(exc)
                problems.append(line(at, text.split(": ", 1)[1] if text.startswith("--") and ": " in text else text))
    return problems


def _model_problems(stream: Dict[str, Any], models: Dict[str, Any], at: KeyPath) -> List[str]:
    names = [str(n) for n in models]
    model = stream.get("model")
    if model is None:
        if len(names) > 1:
            return [line(at.key("model"), "missing; with several models each stream names its own "
                                          f"({', '.join(names)})")]
        model = names[0] if names else None
    elif not isinstance(model, str):
        return []  # (the schema says it)
    elif model not in models:
        return [line(at.key("model"), f"no model is named {describe(model)}" + did_you_mean(model, names))]
    if model is None:
        return []
    own, of_model = stream.get("score_threshold"), (models.get(model) or {}).get("score_threshold")
    if isinstance(own, (int, float)) and isinstance(of_model, (int, float)) and _number(own) and _number(of_model) \
            and own < of_model:
        return [line(at.key("score_threshold"), f"{own:g} is below the score_threshold {of_model:g} of model "
                                                f"{model!r}, whose detector drops those detections first; lower "
                                                "the model's")]
    return []


def _mapping(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
