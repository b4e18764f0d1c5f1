"""The Kubernetes manifests in deploy/kubernetes are valid, and autoscale on metrics thrifty
really publishes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import StartGateway, mock_config
from thrifty.config import parse_config
from thrifty.testing.mock_upstream import MockUpstream

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"

#: The fields of KEDA's ScaledObject (keda.sh/v1alpha1) that the manifest uses, as KEDA's CRD
#: defines them; kubernetes-validate knows only Kubernetes' own kinds.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                                  "apiVersion": {"type": "string"}}, "additionalProperties": False},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": {"type": "string"},
                                   "metadata": {"type": "object", "additionalProperties": {"type": "string"},
                                                "required": ["serverAddress", "query", "threshold"]}},
                }},
            },
        },
    },
}


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_each_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, SCALED_OBJECT)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_existing_files_and_targets_exist() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert all((DEPLOY / f).exists() for f in kustomization["resources"])
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    hpa = next(d for _, d in documents() if d["kind"] == "HorizontalPodAutoscaler")
    assert (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]) in kinds
    keda = next(d for _, d in documents() if d["kind"] == "ScaledObject")
    assert ("Deployment", keda["spec"]["scaleTargetRef"]["name"]) in kinds


def test_the_configmap_holds_a_valid_thrifty_config() -> None:
    cm = next(d for _, d in documents() if d["kind"] == "ConfigMap")
    config = parse_config(cm["data"]["thrifty.yaml"], source="configmap.yaml")
    assert config.store.startswith("postgresql://") and config.server.keys


async def test_autoscalers_read_metrics_thrifty_publishes(
    upstream: MockUpstream, tmp_path: Path, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(mock_config(upstream, tmp_path))
    async with httpx.AsyncClient(base_url=gw.url) as client:
        await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
        for _ in range(100):  # the batch lane opens its store in the background at start
            if gw.gateway.services.batch is not None:
                break
            await asyncio.sleep(0.05)
        text = (await client.get("/metrics")).text
    published = set(re.findall(r"^(thrifty_[a-z_]+)", text, re.M))
    hpa = next(d for _, d in documents() if d["kind"] == "HorizontalPodAutoscaler")
    used = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    keda = next(d for _, d in documents() if d["kind"] == "ScaledObject")
    used |= {re.search(r"(thrifty_[a-z_]+)", t["metadata"]["query"]).group(1) for t in keda["spec"]["triggers"]}  # type: ignore[union-attr]
    assert used <= published
    assert "thrifty_batch_queue_depth 0" in text
    assert "thrifty_in_flight_requests 1" in text  # the scrape itself is in flight
