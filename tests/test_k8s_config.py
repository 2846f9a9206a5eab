"""The Kubernetes files in deploy/ and the GPU op tags, checked against dagster-k8s's schemas."""

import json

import yaml
from dagster._config import validate_config
from dagster_k8s import k8s_job_executor
from dagster_k8s.job import get_user_defined_k8s_config

from synth_jobs.definitions import defs
from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"


def test_executor_run_config_matches_the_k8s_job_executor_schema():
    config = yaml.safe_load((DEPLOY / "k8s_executor.yaml").read_text())["execution"]["config"]
    result = validate_config(k8s_job_executor.config_schema.config_type, config)
    assert result.success, [e.message for e in result.errors]
    broken = {**config, "max_concurrent": "sixteen"}
    assert not validate_config(k8s_job_executor.config_schema.config_type, broken).success


def test_every_gpu_step_requests_one_gpu_in_a_valid_k8s_tag():
    graph = defs.resolve_asset_graph()
    gpu_assets = [key for key in graph.get_all_asset_keys() if graph.get(key).pools == {"gpu"}]
    assert len(gpu_assets) >= 6
    for key in gpu_assets:
        tags = graph.get(key).assets_def.op.tags
        config = get_user_defined_k8s_config(tags)  # raises on a tag outside the schema
        resources = config.container_config["resources"]
        assert resources["limits"] == resources["requests"] == {"nvidia.com/gpu": "1"}, key
        assert json.loads(tags["dagster-k8s/config"])["container_config"] == config.container_config


def test_helm_values_launch_runs_as_pods_with_monitoring():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "synth_jobs.definitions"]
