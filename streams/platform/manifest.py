"""A release's manifest: every app of a stream fully resolved (registry version and URI, options, topics, count)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from streams.dag import check, topics
from streams.dsl import StreamDefinition
from streams.errors import ConfigError
from streams.platform.properties import per_app
from streams.registry import Registry
from streams.runtime.contract import parse_options


def build_manifest(definition: StreamDefinition, properties: dict[str, str], registry: Registry,
                   existing: Mapping[str, StreamDefinition]) -> dict[str, Any]:
    """Check the definition against the other streams and the registry, apply the properties, resolve versions."""
    report = check(definition, existing, registry.catalog())
    resolved = report.definition
    deployments = per_app(properties, [node.label for node in resolved.apps])
    flows = {flow.label: flow for flow in topics(resolved)}
    group = resolved.source_destination.options.get("group") if resolved.source_destination is not None else None
    apps = []
    for index, node in enumerate(resolved.apps):
        deployment = deployments[node.label]
        record, app_class = registry.load(node.app, kind=node.kind, version=deployment.version)
        options = {**node.options, **deployment.options}
        parse_options(app_class, options)  # a property may add an option the app does not take
        flow = flows[node.label]
        autoscale = deployment.autoscaling()
        count = deployment.count
        if autoscale is not None:
            if record.kind == "source":
                raise ConfigError(f"deployer.{node.label}.autoscale: a source has no consumer lag to follow")
            count = min(max(count, autoscale.min), autoscale.max)
        apps.append({"label": node.label, "app": node.app, "kind": record.kind, "version": record.version,
                     "uri": record.uri, "options": options, "inputs": list(flow.inputs), "output": flow.output,
                     "count": count, "memory": deployment.memory, "cpu": deployment.cpu,
                     "autoscale": asdict(autoscale) if autoscale is not None else None})
        if index == 0 and group is not None:
            apps[0]["group"] = group  # `:dest --group=g > app`: the first app reads in that consumer group
    return {"stream": resolved.name, "definition": report.to_json()["definition"], "apps": apps}

